package session

import "github.com/eclipse/paho.golang/paho"

// propsFromPaho keeps the properties web clients care about; nil when there
// are none, so the common case costs nothing. (paho hands every received
// PUBLISH a non-nil, usually empty, properties struct: the test is on its
// fields, before anything is allocated.)
func propsFromPaho(p *paho.PublishProperties) *Props {
	if p == nil || (p.PayloadFormat == nil && p.MessageExpiry == nil && p.ContentType == "" &&
		p.ResponseTopic == "" && p.CorrelationData == nil && len(p.User) == 0) {
		return nil
	}
	out := &Props{ContentType: p.ContentType, ResponseTopic: p.ResponseTopic, CorrelationData: p.CorrelationData}
	if p.PayloadFormat != nil {
		out.PayloadFormat, out.HasPayloadFormat = *p.PayloadFormat, true
	}
	if p.MessageExpiry != nil {
		out.MessageExpiry, out.HasMessageExpiry = *p.MessageExpiry, true
	}
	for _, u := range p.User {
		out.User = append(out.User, UserProperty{Key: u.Key, Value: u.Value})
	}
	return out
}

func (p *Props) toPaho() *paho.PublishProperties {
	if p.Empty() {
		return nil
	}
	out := &paho.PublishProperties{ContentType: p.ContentType, ResponseTopic: p.ResponseTopic, CorrelationData: p.CorrelationData}
	if p.HasPayloadFormat {
		v := p.PayloadFormat
		out.PayloadFormat = &v
	}
	if p.HasMessageExpiry {
		v := p.MessageExpiry
		out.MessageExpiry = &v
	}
	for _, u := range p.User {
		out.User = append(out.User, paho.UserProperty{Key: u.Key, Value: u.Value})
	}
	return out
}

func (p *Props) willToPaho() *paho.WillProperties {
	pp := p.toPaho()
	if pp == nil {
		return nil
	}
	out := &paho.WillProperties{ContentType: pp.ContentType, ResponseTopic: pp.ResponseTopic, CorrelationData: pp.CorrelationData,
		PayloadFormat: pp.PayloadFormat, MessageExpiry: pp.MessageExpiry, User: pp.User}
	if p.HasWillDelay {
		d := p.WillDelay
		out.WillDelayInterval = &d
	}
	return out
}

// responseTopic is the Response Topic, if any (p may be nil).
func (p *Props) responseTopic() string {
	if p == nil {
		return ""
	}
	return p.ResponseTopic
}
