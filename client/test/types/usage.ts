// An application written against the declarations (src/client.d.ts) as a TypeScript
// user would write it: the client README's examples, then the rest of the public API.
// types.test.js type-checks it with tsc --strict for a browser and for Node.js. The
// last lines are misuses the declarations must refuse: each is marked as an expected
// error, and tsc fails when a line so marked type-checks.

import {
  BrokerClient,
  CONNECTION_FAILED,
  ErrorCode,
  Message,
  MqttGatewayError,
  Session,
  errorName,
  openSession,
  registerTransport,
  topicMatches,
} from "mqttgateway-client";
import type {
  ArrivedMessage,
  ConnectResult,
  ErrorInfo,
  OverflowInfo,
  QoS,
  ReconnectionInfo,
  SessionLink,
  Transport,
  TransportChange,
  TransportFactory,
} from "mqttgateway-client";

// The README's first example.
const session: Session = await openSession("https://gateway.example/mqtt", { user: "alice", password: "secret" });
const client: BrokerClient = session.createClient("sensors");
client.onMessageArrived = (m) => console.log(m.destinationName.split("/"), m.payloadString); // the topic is a string
await client.connect();
await client.subscribe("sensors/+/temp", { maxFrequency: 2 });
await client.publish("sensors/a/cmd", "on", 1);

// Wills and persistent sessions.
const dedicated = session.createClient("sensors", "plant-7");
const will = new Message("offline");
will.destinationName = "presence/alice";
const connected: ConnectResult = await dedicated.connect({
  cleanSession: false,
  sessionExpiryInterval: 300,
  willMessage: will,
  willDelayInterval: 10,
});
const resumed: boolean = connected.sessionPresent;

// Subscription options.
const granted: QoS = await client.subscribe("rooms/42/#", { qos: 1, noLocal: true, retainHandling: 2 });
await client.subscribe("rooms/43/#", { retainAsPublished: true, onSuccess: ({ grantedQos }) => console.log(grantedQos) });

// Throttling.
await client.setMaxFrequency("sensors/+/temp", 10);
const cap: number = await session.setMaxBandwidth(2048);
session.onOverflow = ({ dropped }: OverflowInfo) => console.warn(`${dropped} messages dropped`);

// A mobile app's own network event: check the connection now.
const alive: boolean | null = await session.checkConnection({ timeout: 3000 });

// Automatic reconnection of a dedicated client.
dedicated.onConnectionLost = (e: ErrorInfo) => console.warn("lost", e.errorCode);
dedicated.onReconnectionStart = () => console.warn("reconnecting");
dedicated.onReconnectionComplete = ({ failedSubscriptions }: ReconnectionInfo) =>
  console.info("back", (failedSubscriptions ?? []).map((f) => `${f.filter}: ${f.errorCode} ${f.errorMessage}`));
await dedicated.connect({ reconnect: true, cleanSession: false, onFailure: (e) => console.warn(e.errorCode) });
// As in Paho: after the first connect and after each reconnection.
dedicated.onConnected = (reconnect: boolean, uri: string) => console.info(reconnect ? "reconnected to" : "connected to", uri);
client.onMessageArrived = (m) => console.log(m.topic.length); // Paho's name, a string too

// A page loaded during a deploy, and an effect's clean-up.
const aborter = new AbortController();
const retried = await openSession("https://gateway.example/mqtt", { retry: true, signal: aborter.signal });
aborter.abort();
console.log(retried.state);

// A Node.js service behind an auth handler: a token with every request, refreshed.
let token = "Bearer first";
await openSession("https://gateway.example/mqtt", { headers: { Authorization: token } });
await openSession("https://gateway.example/mqtt", { headers: () => ({ Authorization: token }) });
await openSession("https://gateway.example/mqtt", { user: "svc", password: () => token });
token = "Bearer next";
// @ts-expect-error header values are strings
await openSession("https://gateway.example/mqtt", { headers: { "X-Count": 1 } });

// Transports.
const polling = await openSession("https://gateway.example/mqtt", { transport: "polling", probeTimeout: 2000 });
await openSession(new URL("https://gateway.example/mqtt"), { transport: ["websocket", "polling"], connectTimeout: 5000 });
polling.onTransportChange = ({ transport, previous }: TransportChange) => console.log(previous, "->", transport);
const current: string | null = polling.transport;

// Messages with MQTT 5 properties, sent and received.
const m = new Message(new Uint8Array([1, 2, 3]));
m.destinationName = "plant/7/cmd";
m.qos = 2;
m.retained = true;
m.contentType = "application/octet-stream";
m.responseTopic = "plant/7/reply";
m.correlationData = new TextEncoder().encode("req-1");
m.userProperties = [["origin", "ui"], ["origin", "test"]];
m.messageExpiryInterval = 60;
m.payloadFormatIndicator = 0;
const sent: Message = await dedicated.send(m);
const bytes: Uint8Array = sent.payloadBytes;
dedicated.onMessageDelivered = (d) => console.log("delivered", d.destinationName);
const handler = (m: ArrivedMessage): string => m.destinationName;
dedicated.onMessageArrived = handler;
dedicated.onMessageNotDelivered = (d, e) => console.warn(d.destinationName, e.errorCode === ErrorCode.broker_unavailable);
dedicated.onMessageNotAuthorized = (d, e) => console.warn(d.destinationName, errorName(e.errorCode));
client.onBrokerUnavailable = (e) => console.warn(e.errorMessage);
client.onSubscriptionLost = ({ filter, errorCode }) => console.warn(`no longer subscribed to ${filter} (${errorCode})`);
client.onBrokerAvailable = () => console.info("broker back");
await client.unsubscribe("rooms/42/#");
await dedicated.disconnect();

// Errors.
try {
  await openSession("https://gateway.example/mqtt");
} catch (e) {
  if (e instanceof MqttGatewayError && e.errorCode === CONNECTION_FAILED) console.warn(e.errorMessage, e.invocationContext);
}
const refused: 4021 = ErrorCode.not_authorized;
const matches: boolean = topicMatches("sensors/+/temp", "sensors/a/temp");

// A custom transport.
const inMemory: TransportFactory = async (base: string, { link }: { timeout?: number; link?: SessionLink }) => {
  const t: Transport = {
    name: "in-memory",
    send(unit: Uint8Array) {
      console.log(base, unit.length, link?.maxFrame());
    },
    close() {},
    onunit: null,
    onclose: null,
  };
  return t;
};
registerTransport("in-memory", inMemory);

session.onClose = ({ errorCode }) => console.log("closed", errorCode);
session.onNotice = ({ errorCode, value }) => console.log(errorCode, value);
await session.close();
console.log(granted, cap, alive, current, bytes, resumed, refused, matches, session.id, session.state, session.info["server"]);

// Misuses the declarations must refuse.
// @ts-expect-error QoS 3 does not exist
await client.subscribe("a", { qos: 3 });
// @ts-expect-error misspelt option
await openSession("https://gateway.example/mqtt", { transprot: "polling" });
// @ts-expect-error a payload is required: "" for an empty one
await client.publish("a");
// @ts-expect-error a number is not a payload
new Message(42);
// @ts-expect-error the session id is read-only
session.id = "x";
// @ts-expect-error messages arrive as Message objects
client.onMessageArrived = (text: string) => console.log(text);
// @ts-expect-error retain handling is 0, 1 or 2
await client.subscribe("a", { retainHandling: 3 });
// @ts-expect-error BrokerClient is created by Session.createClient
new BrokerClient();
