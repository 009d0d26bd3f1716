// How a page loads the client: client.js names every other module of src/, so that a
// browser fetches them all as soon as it has client.js, one round trip after it,
// instead of discovering them a level of imports at a time (seven levels: seven round
// trips one after another, seconds on a phone).

import assert from "node:assert/strict";
import { readFile, readdir } from "node:fs/promises";
import { test } from "node:test";

test("client.js names every other module of the client, so that a page fetches them all at once", async () => {
  const src = new URL("../src/", import.meta.url);
  const modules = (await readdir(src)).filter((f) => f.endsWith(".js") && f !== "client.js");
  assert.ok(modules.length >= 19, `${modules.length} modules`);
  const text = await readFile(new URL("client.js", src), "utf8");
  const named = new Set([...text.matchAll(/^(?:import|export)\b[^;]*?"\.\/([a-z-]+\.js)";/gms)].map((m) => m[1]));
  assert.deepEqual(
    modules.filter((f) => !named.has(f)),
    [],
    "modules a page would find only through another module's imports",
  );
});
