package session

import "github.com/prometheus/client_golang/prometheus"

// queueCollector reports, at each scrape, the frames live sessions have
// queued and not yet written. On call, "it is slow" is one client behind
// (its link, its bandwidth cap: a large max with a small sum) or all of
// them (the gateway's CPU, its network: the sum grows). Counted when
// scraped, walking the sessions, rather than kept up to date on every
// delivery, which would put a shared counter on the fan-out's hot path.
type queueCollector struct {
	m                         *Manager
	frames, bytes, framesMost *prometheus.Desc
}

func newQueueCollector(m *Manager, gateway string) *queueCollector {
	labels := prometheus.Labels{"gateway": gateway}
	return &queueCollector{
		m: m,
		frames: prometheus.NewDesc("mqtt_gateway_queued_frames",
			"Frames queued for live sessions and not yet written to their connections, in all.", nil, labels),
		bytes: prometheus.NewDesc("mqtt_gateway_queued_bytes",
			"Bytes of the frames queued for live sessions and not yet written, in all, as max_queued_bytes counts them (topic and payload, and 64 bytes a frame).", nil, labels),
		framesMost: prometheus.NewDesc("mqtt_gateway_queued_frames_max",
			"Frames queued and not yet written for the session with the most.", nil, labels),
	}
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.frames
	ch <- c.bytes
	ch <- c.framesMost
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	var frames, most uint64
	var bytes int
	for _, s := range c.m.sessionsMatching(nil) {
		s.mu.Lock()
		n, b := s.out.next-1-s.out.sent, s.out.pendingBytes
		s.mu.Unlock()
		frames += n
		bytes += b
		most = max(most, n)
	}
	ch <- prometheus.MustNewConstMetric(c.frames, prometheus.GaugeValue, float64(frames))
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(bytes))
	ch <- prometheus.MustNewConstMetric(c.framesMost, prometheus.GaugeValue, float64(most))
}
