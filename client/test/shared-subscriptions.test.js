// A pool of Node.js workers shares out jobs with an MQTT 5 shared subscription
// ($share/<share name>/<filter>) to a share group the gateway opens
// (shared_subscriptions): each worker a client with a client ID of its own, so a
// member of the share group as a direct MQTT client is. Each job reaches one
// worker once; a worker that unsubscribes gets no more. A client on the gateway's
// shared connection (no client ID) cannot join, and its subscribe rejects with
// 4031 saying why. Real parts: Mosquitto and the gateway.

import assert from "node:assert/strict";
import { test } from "node:test";

import { openSession } from "../src/client.js";
import { gatewayForFile } from "./support/env.js";
import { publishNumbered, unique } from "./support/mqtt.js";
import { waitFor } from "./support/wait.js";

const env = gatewayForFile({ extra: "shared_subscriptions workers" });

test("workers with client IDs share out jobs through a shared subscription", async () => {
  const session = await openSession(env.gateway.base);
  env.cleanups.push(() => session.close());
  const jobs = unique("jobs");
  const filter = `$share/workers/${jobs}/+`;
  const got = new Map(); // job → workers that had it
  const workers = [];
  for (const id of ["w1", "w2"]) {
    const worker = session.createClient("main", `${id}-${jobs.split("/")[1]}`);
    worker.onMessageArrived = (m) => got.set(m.payloadString, [...(got.get(m.payloadString) ?? []), id]);
    await worker.connect();
    await worker.subscribe(filter, { qos: 1 });
    workers.push(worker);
  }

  await publishNumbered(env.mosquitto.port, `${jobs}/a`, { count: 100, rate: 1000, qos: 1 });
  await waitFor(() => got.size === 100, { timeout: 10000, what: `100 jobs (got ${got.size})` });
  await new Promise((r) => setTimeout(r, 200)); // a second copy would show up here
  const per = { w1: 0, w2: 0 };
  for (const [job, ids] of got) {
    assert.equal(ids.length, 1, `job ${job} reached ${ids.join(", ")}`);
    per[ids[0]]++;
  }
  assert.ok(per.w1 > 0 && per.w2 > 0, `jobs per worker ${JSON.stringify(per)}`);

  await workers[0].unsubscribe(filter);
  got.clear();
  await publishNumbered(env.mosquitto.port, `${jobs}/a`, { count: 20, rate: 1000, qos: 1 });
  await waitFor(() => got.size === 20, { timeout: 10000, what: `20 more jobs (got ${got.size})` });
  assert.deepEqual([...new Set([...got.values()].flat())], ["w2"], "after w1 left the group");

  const onShared = session.createClient("main");
  await onShared.connect();
  await assert.rejects(onShared.subscribe(filter), (e) => e.errorCode === 4031 && /client ID/.test(e.errorMessage));
});
