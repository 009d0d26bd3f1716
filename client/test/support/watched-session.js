/**
 * Runs in a page (page.evaluate): opens a session on /mqtt over `transport` that
 * records its reconnections in window.events ("start", then the completion's info),
 * and a client of `broker` subscribed to `filter` at QoS 1 whose messages go to
 * window.got; the session is window.s. Returns the session's id and transport, the
 * page's visibility, and the HTTP versions of the page's requests so far.
 * @param {{transport: string, broker: string, filter: string}} options
 */
export async function openWatchedSession({ transport, broker, filter }) {
  const { openSession } = await import("/mqtt/client.js");
  window.events = [];
  const s = await openSession("/mqtt", {
    transport,
    onReconnectionStart: () => window.events.push("start"),
    onReconnectionComplete: (i) => window.events.push(i),
  });
  window.s = s;
  const c = s.createClient(broker);
  window.got = [];
  c.onMessageArrived = (m) => window.got.push(m.payloadString);
  await c.connect();
  await c.subscribe(filter, { qos: 1 });
  const protocols = performance.getEntriesByType("resource").map((e) => e.nextHopProtocol);
  return { id: s.id, transport: s.transport, visibility: document.visibilityState, protocols: [...new Set(protocols)] };
}
