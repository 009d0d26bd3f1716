// Liveness and retry timing: the heartbeat monitor and the reconnection backoff.

/**
 * The least silence that makes steady traffic count as stalled (Heartbeat, stalled):
 * longer than a stall a slow mobile link recovers from by itself in most cases, far
 * shorter than the heartbeat deadline (45 s by default).
 */
export const STALL_MIN = 5000;

/** How many times the typical gap between units a silence must last to be a stall. */
const STALL_GAPS = 4;

/**
 * How many ticks (a second each, with the default heartbeat) must have seen units
 * since the last silence for the traffic to count as steady: a session's burst of
 * answers and retained messages when it subscribes is not, nor the gateway's PINGs.
 */
const STEADY_TICKS = 3;

/**
 * Sends PING when nothing was sent for `heartbeat` ms and declares the connection dead
 * when nothing was received for 2 × heartbeat + 5000 ms (PROTOCOL.md, Heartbeats).
 *
 * Browsers throttle timers in background tabs (to one run per second, or per minute
 * after a while), and laptops sleep. So instead of trusting one long timeout, a short
 * interval compares Date.now() deltas on every tick. A tick that comes much later than
 * scheduled means this page (not the network) was asleep: the receive deadline is then
 * pushed so the server gets one heartbeat period to show it is still there, rather than
 * declaring a healthy connection dead because our own clock jumped.
 */
export class Heartbeat {
  /**
   * @param {object} o
   * @param {() => void} o.ping sends a PING
   * @param {() => void} o.dead called once when the receive deadline passes
   * @param {() => boolean} [o.woke] called when a tick shows this process was asleep;
   *   true: the session checks the connection (which pings), and this tick does not
   * @param {() => void} [o.stalled] called once when traffic that came steadily (in
   *   STEADY_TICKS ticks or more) stops for longer than stallAfter: the session
   *   checks the connection then, so that a dashboard on a path a network switch left
   *   silent (and nobody reported) notices in seconds, not at the deadline. An idle
   *   session, whose only traffic is the gateway's PINGs, never stalls. stallChecked
   *   tells how the check went.
   * @param {() => number} [o.now] clock, for tests
   */
  constructor({ ping, dead, woke = () => false, stalled = () => {}, now = Date.now }) {
    this.ping = ping;
    this.dead = dead;
    this.woke = woke;
    this.stalled = stalled;
    this.now = now;
    this.timer = null;
    this.heartbeat = 0;
    // The typical gap between units received (ms), a moving average kept across
    // connections: the traffic is the application's, not the connection's.
    this.gap = Infinity;
    this.lastReceived = 0;
    this.stallSignalled = false; // this silence was weighed as a stall (tick)
    this.receivedSinceTick = false;
    this.activeTicks = 0; // ticks that saw units since the last silence
    this.stallBackoff = 1; // doubles with each failed stall check (stallChecked)
  }

  /** Starts (or restarts) monitoring with the server's heartbeat period. */
  start(heartbeat) {
    this.stop();
    this.heartbeat = heartbeat;
    const t = this.now();
    this.lastSent = t;
    this.lastReceived = t;
    this.lastTick = t;
    this.stallSignalled = false;
    this.tickMs = Math.min(1000, Math.max(25, Math.floor(heartbeat / 4)));
    this.timer = setInterval(() => this.tick(), this.tickMs);
    // Node.js: the transport keeps the process alive while it is open; this timer
    // must not keep it alive on its own.
    this.timer.unref?.();
  }

  stop() {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  sent() {
    this.lastSent = this.now();
  }

  /**
   * Also sends the PING that is due, if one is: a page in a background tab may run its
   * timers once a minute only (browsers throttle them), while what arrives from the
   * network is handled at once. Answering the gateway's traffic (its own PINGs, at
   * least every heartbeat) keeps it hearing from us within its 2 × heartbeat + 5 s
   * however rarely tick() runs.
   */
  received() {
    const t = this.now();
    if (this.lastReceived > 0) {
      const gap = t - this.lastReceived;
      this.gap = this.gap === Infinity ? gap : this.gap + (gap - this.gap) / 4;
    }
    this.lastReceived = t;
    this.stallSignalled = false;
    this.receivedSinceTick = true;
    if (this.timer !== null && t - this.lastSent >= this.heartbeat) {
      this.lastSent = t;
      this.ping();
    }
  }

  /** The receive deadline: 2 × heartbeat + 5000 ms. */
  get deadAfter() {
    return 2 * this.heartbeat + 5000;
  }

  /**
   * The silence after which traffic counts as stalled: STALL_GAPS typical gaps, at
   * least STALL_MIN, times the backoff of failed checks. A pause in the application's
   * own traffic costs a check or two (each answered one lengthens the typical gap),
   * and a check that keeps failing for a cause that a new connection does not mend
   * (a large upload ahead of its PING on a slow uplink) is not repeated every few
   * seconds.
   */
  get stallAfter() {
    return Math.max(STALL_MIN, STALL_GAPS * this.gap) * this.stallBackoff;
  }

  /**
   * How the check that stalled() started went: a failed one doubles stallAfter (up to
   * 8 times), until a check is answered or traffic comes steadily again.
   * @param {boolean} ok
   */
  stallChecked(ok) {
    this.stallBackoff = ok ? 1 : Math.min(this.stallBackoff * 2, 8);
  }

  tick() {
    const t = this.now();
    let slept = false;
    if (t - this.lastTick > 3 * this.tickMs + 1000) {
      // We were asleep: give the peer a full heartbeat (+ slack) from now. The
      // network may have changed meanwhile (a laptop woken on another Wi-Fi): woke
      // lets the session check the connection in seconds rather than that long.
      this.lastReceived = Math.max(this.lastReceived, t - this.deadAfter + this.heartbeat + 5000);
      slept = true;
    }
    this.lastTick = t;
    // A check the session started on waking sends its own PING.
    if (slept && this.woke()) return;
    if (t - this.lastReceived >= this.deadAfter) {
      this.stop();
      this.dead();
      return;
    }
    if (this.receivedSinceTick && ++this.activeTicks >= STEADY_TICKS) {
      // Traffic is steady again: what made the last checks fail is mended.
      this.stallBackoff = 1;
    }
    this.receivedSinceTick = false;
    if (slept) this.activeTicks = 0;
    else if (!this.stallSignalled && t - this.lastReceived >= this.stallAfter) {
      // One silence ends a stretch of traffic, steady or not.
      this.stallSignalled = true;
      if (this.activeTicks >= STEADY_TICKS) this.stalled();
      this.activeTicks = 0;
    }
    if (t - this.lastSent >= this.heartbeat) {
      this.lastSent = t;
      this.ping();
    }
  }
}

/**
 * The n-th delay (0-based) of a schedule doubling from `first` ms up to `cap` ms, each
 * drawn between half and all of its step: the jitter keeps the many tabs one event cut
 * off (a gateway or broker restart) from all coming back in the same instant.
 * @param {number} n
 * @param {number} first
 * @param {number} cap
 * @param {() => number} random
 */
function doublingDelay(n, first, cap, random) {
  const step = Math.min(cap, first * 2 ** Math.min(n, 30));
  return Math.round(step * (0.5 + random() * 0.5));
}

/**
 * Reconnection delay for the n-th consecutive attempt (0-based) to reach the gateway:
 * from ~250 ms, capped at 5 s.
 * @param {number} attempt
 * @param {() => number} [random]
 */
export function backoffDelay(attempt, random = Math.random) {
  return doublingDelay(attempt, 250, 5000, random);
}

/**
 * Delay before the n-th consecutive attempt (0-based) of a dedicated client's automatic
 * reconnection to its broker (connect option `reconnect`): from 1 s up to 30 s, as
 * Paho's 1 s doubling (up to 128 s) but capped lower because a web page waits on it.
 * @param {number} attempt
 * @param {() => number} [random]
 */
export function brokerReconnectDelay(attempt, random = Math.random) {
  return doublingDelay(attempt, 1000, 30000, random);
}

/**
 * Delay before opening a fresh session after the n-th (0-based) session in a row that
 * the gateway lost soon after opening it (session.js, QUICK_LOSS_MS): from 1 s up to
 * 30 s. A setup that loses every session (a load balancer without affinity) then costs
 * the gateway a session every 30 s per client instead of hundreds a second.
 * @param {number} n
 * @param {() => number} [random]
 */
export function freshSessionDelay(n, random = Math.random) {
  return doublingDelay(n, 1000, 30000, random);
}

/**
 * Calls `fn` once `ms` have passed, unless cancelled; returns the cancel function.
 *
 * Used for the deadlines of handshakes and requests, where firing too early would
 * abandon a transport that works. A timer that fires much later than due means the page
 * (or the laptop) was asleep, not that the peer was slow: the replies may be waiting
 * in the queue behind this very callback. So a late timer grants the full time once
 * more, from now. Only once: a hidden tab whose timers run once a minute must still
 * give up eventually.
 * @param {number} ms
 * @param {() => void} fn
 * @param {() => number} [now] clock, for tests
 * @returns {() => void}
 */
export function deadline(ms, fn, now = Date.now) {
  let timer = null;
  let extended = false;
  const arm = (wait) => {
    const due = now() + wait;
    timer = setTimeout(() => {
      if (!extended && now() - due > 1000 + wait / 2) {
        extended = true;
        arm(ms);
        return;
      }
      timer = null;
      fn();
    }, wait);
  };
  arm(ms);
  return () => {
    if (timer !== null) clearTimeout(timer);
    timer = null;
  };
}
