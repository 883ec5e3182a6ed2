// Signs one test delivery with a provider's official package and prints the
// header value on stdout (no newline). Run by crates/testkit/src/signers.rs
// from the directory it installed package-lock.json into.
//
// stdin: {"kind":"github","secret":"..","payload":".."}
//     -> X-Hub-Signature-256: sha256=<hex>
//    or {"kind":"stripe","secret":"whsec_..","payload":"..","timestamp":1234}
//     -> Stripe-Signature: t=1234,v1=<hex>
//
// The payload is signed as the string given (as UTF-8), never parsed or
// re-serialized. Exit 2: a bad request; any other failure is the tool's.

import { sign } from "@octokit/webhooks-methods";
import Stripe from "stripe";

const chunks = [];
for await (const chunk of process.stdin) {
  chunks.push(chunk);
}
const request = JSON.parse(Buffer.concat(chunks).toString("utf8"));

function fail(message) {
  process.stderr.write(`sign.mjs: ${message}\n`);
  process.exit(2);
}

if (typeof request.secret !== "string" || typeof request.payload !== "string") {
  fail("secret and payload must be strings");
}

let header;
switch (request.kind) {
  case "github":
    header = await sign(request.secret, request.payload);
    break;
  case "stripe":
    if (!Number.isSafeInteger(request.timestamp)) {
      fail("stripe needs an integer timestamp (unix seconds)");
    }
    header = Stripe.webhooks.generateTestHeaderString({
      payload: request.payload,
      secret: request.secret,
      timestamp: request.timestamp,
    });
    // The package takes a falsy timestamp (0) to mean now: never sign a
    // timestamp other than the one asked for.
    if (!header.startsWith(`t=${request.timestamp},`)) {
      fail(`stripe signed ${header.split(",")[0]}, not t=${request.timestamp} (it reads 0 as now)`);
    }
    break;
  default:
    fail(`unknown kind ${JSON.stringify(request.kind)}: expected github or stripe`);
}
process.stdout.write(header);
