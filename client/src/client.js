// mqttgateway-client: the JavaScript client of mqtt_gateway, for browsers and Node.js.
//
//   import { openSession, Message } from "/mqtt/client.js";      // browser
//   import { openSession, Message } from "mqttgateway-client";   // Node.js
//
//   const session = await openSession("/mqtt", { user: "alice", password: "secret" });
//   const client = session.createClient("sensors");
//   client.onMessageArrived = (m) => console.log(m.destinationName, m.payloadString);
//   await client.connect();
//   await client.subscribe("sensors/+/temp", { qos: 1 });
//   await client.publish("sensors/a/cmd", "on", 1);

import { Session } from "./session.js";

export { BrokerClient } from "./broker-client.js";
export { CONNECTION_FAILED, ErrorCode, MqttGatewayError, errorName } from "./errors.js";
export { Message } from "./message.js";
export { Session } from "./session.js";
export { topicMatches } from "./topic.js";
export { registerTransport } from "./transports.js";

/**
 * Opens a session with the gateway.
 *
 * @param {string | URL} url the gateway's base URL, e.g. "https://host/mqtt" or, in a
 *   page, "/mqtt" (resolved against the page's location)
 * @param {object} [options]
 * @param {string} [options.user] user name for the gateway's authenticate hook
 * @param {string | ArrayBuffer | ArrayBufferView} [options.password]
 * @param {string | string[] | Function} [options.transport] transport name(s) to try in
 *   order (default "websocket"), or a transport factory
 * @param {number} [options.maxBandwidth] bytes per second the gateway may send
 * @param {number} [options.connectTimeout] ms to wait for a transport to open (10000)
 * @param {() => void} [options.onReconnectionStart]
 * @param {(info: {messagesMayHaveBeenLost: boolean}) => void} [options.onReconnectionComplete]
 * @param {(info: {errorCode: number, errorMessage: string}) => void} [options.onClose]
 * @param {(info: {errorCode: number, errorMessage: string, value: number}) => void} [options.onNotice]
 * @returns {Promise<Session>} rejects with an MqttGatewayError (e.g. 4020 when the
 *   authenticate hook says no, 1006 when the gateway cannot be reached)
 */
export async function openSession(url, options = {}) {
  const session = new Session(url, options);
  await session._open();
  return session;
}
