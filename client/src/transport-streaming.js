// The HTTP streaming transport (PROTOCOL.md, Transports/HTTP streaming), for networks
// that block WebSocket: `POST <base>/stream` with OPEN or BIND answers with a long
// response of length-prefixed frames as they come; requests go by `POST <base>/send`.

import { MqttGatewayError } from "./errors.js";
import { FrameReader } from "./frame-reader.js";
import { HttpTransport, describeAnswer, endpoint, fetchError, httpAnswer, isProtocolResponse } from "./transport-http.js";

// The gateway ends a stream after about 4 MiB so that proxies holding whole responses
// are not asked to hold more; a proxy may also end long responses after a while. Such a
// stream is renewed at once with BIND and the session does not notice. A stream that
// ends sooner and smaller than this is treated as a broken connection instead, so
// that something that ends every stream at once makes the session back off rather
// than loop.
const RENEW_MIN_BYTES = 1 << 20;
const RENEW_MIN_MS = 5000;

class StreamingTransport extends HttpTransport {
  constructor(base, options) {
    super("streaming", base, options);
    this._streamUrl = endpoint(base, "stream");
  }

  /** Runs streams until the transport ends: the first with `unit`, then with BIND. */
  async _receive(unit) {
    let body = unit;
    while (!this._closed) {
      const ended = await this._stream(body);
      if (!ended || this._closed) return;
      body = this._link.bindUnit();
    }
  }

  /**
   * One /stream request. Resolves true when the server ended it cleanly after enough
   * data to be worth renewing; otherwise the transport has failed (or was closed).
   */
  async _stream(body) {
    const ac = new AbortController();
    this._receiving = ac;
    const started = Date.now();
    let res;
    try {
      res = await this._post(this._streamUrl, body, ac.signal);
    } catch (err) {
      this._fail(1006, `stream request failed: ${fetchError(err)}`);
      return false;
    }
    if (this._closed) {
      ac.abort();
      return false;
    }
    if (!res.ok) {
      await this._failWithAnswer(res, "stream refused");
      return false;
    }
    if (!isProtocolResponse(res)) {
      ac.abort();
      // Something at that URL answered, but not the gateway (a wrong base path).
      const http = httpAnswer(res);
      this._fail(1006, `stream answered ${describeAnswer(http)}`, http);
      return false;
    }
    if (!res.body) {
      ac.abort();
      this._fail(1006, "stream answered without a body");
      return false;
    }
    const reader = res.body.getReader();
    const frames = new FrameReader();
    let bytes = 0;
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (err) {
        this._fail(1006, `stream broken: ${err?.message ?? err}`);
        return false;
      }
      if (this._closed) {
        ac.abort();
        return false;
      }
      if (chunk.done) break;
      bytes += chunk.value.length;
      let unit;
      try {
        unit = frames.push(chunk.value);
      } catch (err) {
        if (!(err instanceof MqttGatewayError)) throw err;
        ac.abort();
        this._fail(err.errorCode, err.errorMessage);
        return false;
      }
      if (unit) this._deliver(unit);
    }
    if (frames.pending > 0) {
      this._fail(1006, "stream ended inside a frame");
      return false;
    }
    if (bytes < RENEW_MIN_BYTES && Date.now() - started < RENEW_MIN_MS) {
      this._fail(1006, "stream ended early");
      return false;
    }
    return true;
  }
}

/**
 * Opens an HTTP streaming transport. Nothing goes over the network until the session
 * sends its first unit (OPEN or BIND), which starts the first stream; the session's
 * handshake deadline then tells whether the stream delivers (a proxy that buffers
 * responses holds OPENED back, and long polling is the way through).
 *
 * @param {string | URL} base gateway base URL
 * @param {{link: import("./transport-http.js").SessionLink}} options
 * @returns {Promise<import("./transports.js").Transport>}
 */
export async function connectStreaming(base, options = {}) {
  return new StreamingTransport(base, options);
}
