// The HTTP long polling transport (PROTOCOL.md, Transports/HTTP long polling), for
// proxies that hold responses until they end: `POST <base>/poll` with OPEN or BIND is
// answered with OPENED or BOUND and the data frames pending, up to 64 KiB and the
// server's replay window (or a PING after up to a heartbeat); the next poll goes at
// once with BIND and the new count, which doubles as the acknowledgement of what
// arrived, and brings what did not fit. Requests go by `POST <base>/send`.

import { HttpTransport, describeAnswer, endpoint, fetchError, httpAnswer, isProtocolResponse } from "./transport-http.js";

class PollingTransport extends HttpTransport {
  constructor(base, options) {
    super("polling", base, options);
    this._pollUrl = endpoint(base, "poll");
  }

  /** Polls until the transport ends: first with `unit`, then with BIND. */
  async _receive(unit) {
    let body = unit;
    // The first poll of a transport asks for an answer at once (?wait=0), so a
    // resuming session gets BOUND without waiting for the next message (and this
    // transport needs no bindHold).
    let url = `${this._pollUrl}?wait=0`;
    while (!this._closed) {
      if (!(await this._poll(body, url)) || this._closed) return;
      url = this._pollUrl;
      // The session has counted this answer's frames (delivery is synchronous), so
      // the BIND acknowledges them.
      body = this._link.bindUnit();
    }
  }

  /** One poll; resolves true when its answer was delivered. */
  async _poll(body, url) {
    const ac = new AbortController();
    this._receiving = ac;
    let res;
    let answer;
    try {
      res = await this._post(url, body, ac.signal);
      if (this._closed) return false;
      if (!res.ok) {
        await this._failWithAnswer(res, "poll refused");
        return false;
      }
      if (!isProtocolResponse(res)) {
        ac.abort();
        // Something at that URL answered, but not the gateway (a wrong base path).
        const http = httpAnswer(res);
        this._fail(1006, `poll answered ${describeAnswer(http)}`, http);
        return false;
      }
      answer = new Uint8Array(await res.arrayBuffer());
    } catch (err) {
      this._fail(1006, `poll failed: ${fetchError(err)}`);
      return false;
    }
    if (this._closed) return false;
    if (answer.length === 0) {
      this._fail(1006, "empty poll answer");
      return false;
    }
    // A poll answer is whole frames (it has a Content-Length): one unit.
    this._deliver(answer);
    return true;
  }
}

/**
 * Opens an HTTP long polling transport. Nothing goes over the network until the
 * session sends its first unit (OPEN or BIND), which is the first poll.
 *
 * @param {string | URL} base gateway base URL
 * @param {{link: import("./transport-http.js").SessionLink}} options
 * @returns {Promise<import("./transports.js").Transport>}
 */
export async function connectPolling(base, options = {}) {
  return new PollingTransport(base, options);
}
