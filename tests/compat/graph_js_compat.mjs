// Microsoft Graph JavaScript client compatibility test.
//
// Drives a running entitlement-gateway, over https, with the unchanged npm package
// @microsoft/microsoft-graph-client (3.x) the way an application does:
// `Client.init({ authProvider, baseUrl, defaultVersion: "beta", customHosts })` and the
// client's own request API (`.api(...).post/get/delete`, `.filter`, `.top`, `.count`,
// `.select`), `PageIterator` and `GraphError`.
//
// Why https: the client's AuthenticationHandler attaches `Authorization` only to https
// URLs whose host is a Graph host or one of `customHosts`; over http, or to a host not
// listed, it sends the request without the token (checked below).
//
// Run it through tests/compat/graph_js_compat.sh, which installs the client, makes a
// throwaway CA and server certificate, starts the server with --tls-cert/--tls-key and
// mints the tokens. By hand:
//
//   NODE_EXTRA_CA_CERTS=ca.pem GRAPH_JS_DIR=DIR GRAPH_BASE_URL=https://127.0.0.1:PORT/ \
//   GRAPH_TOKEN=... GRAPH_READ_TOKEN=... GRAPH_SEED=tests/fixtures/seed/request.json \
//     node tests/compat/graph_js_compat.mjs [--verbose]
//
// GRAPH_JS_DIR is the npm project the client is installed in (its node_modules);
// GRAPH_READ_TOKEN carries EntitlementManagement.Read.All only.
//
// Every check prints PASS or FAIL and its name; a FAIL also shows what came back and the
// last HTTP exchange. The last line is "N passed, N failed"; the exit status is 1 when any
// check failed, 2 on a usage error.

import { spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

const USAGE = "usage: GRAPH_JS_DIR=... GRAPH_BASE_URL=https://HOST:PORT/ GRAPH_TOKEN=... " +
    "GRAPH_READ_TOKEN=... GRAPH_SEED=request.json node graph_js_compat.mjs [--verbose]";
const VERBOSE = process.argv.includes("--verbose");
const env = (name) => {
    const value = process.env[name];
    if (!value) {
        console.error(`error: ${name} is not set\n${USAGE}`);
        process.exit(2);
    }
    return value;
};
const JS_DIR = env("GRAPH_JS_DIR");
const BASE = env("GRAPH_BASE_URL").replace(/\/?$/, "/"); // https://127.0.0.1:PORT/
const TOKEN = env("GRAPH_TOKEN");
const READ_TOKEN = env("GRAPH_READ_TOKEN");
const SEED = JSON.parse(readFileSync(env("GRAPH_SEED"), "utf8"));
const BASE_URL = new URL(BASE);
if (BASE_URL.protocol !== "https:") {
    console.error(`error: GRAPH_BASE_URL must be https (the client sends no token over http): ${BASE}`);
    process.exit(2);
}
const HOST = BASE_URL.hostname;

// The client, from its install directory (not from the repository).
const require = createRequire(join(JS_DIR, "package.json"));
const graph = require("@microsoft/microsoft-graph-client");
const { Client, GraphError, PageIterator } = graph;
const CLIENT_VERSION = require("@microsoft/microsoft-graph-client/package.json").version;

const PATH = "/identityGovernance/entitlementManagement/accessPackageAssignments";
const COLLECTION_URL = `${BASE}beta${PATH}`; // what the client should request
const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const CALL_TIMEOUT_MS = 20000;

// --- the HTTP exchanges, as the client's fetch sees them ----------------------------------
//
// The client's HTTPMessageHandler calls the global fetch (Node's own; no polyfill). This
// wrapper only records each request and response (for the checks on headers and for
// diagnostics); it changes nothing.

const exchanges = [];
const realFetch = globalThis.fetch;
globalThis.fetch = async (input, init = {}) => {
    const url = typeof input === "string" ? input : input.url;
    const headers = new Headers(init.headers ?? (typeof input === "string" ? undefined : input.headers));
    const exchange = {
        method: init.method ?? "GET",
        url,
        requestHeaders: headers,
        requestBody: typeof init.body === "string" ? init.body : "",
        status: 0,
        responseHeaders: new Headers(),
        responseBody: "",
        error: null,
    };
    exchanges.push(exchange);
    try {
        const response = await realFetch(input, init);
        exchange.status = response.status;
        exchange.responseHeaders = response.headers;
        exchange.responseBody = await response.clone().text();
        if (VERBOSE) console.log("      " + describe(exchange).replaceAll("\n", "\n      "));
        return response;
    } catch (e) {
        exchange.error = e;
        if (VERBOSE) console.log("      " + describe(exchange).replaceAll("\n", "\n      "));
        throw e;
    }
};
const last = () => exchanges[exchanges.length - 1];

function clip(text, limit = 600) {
    return text.length <= limit ? text : text.slice(0, limit) + "...";
}

function describe(x) {
    if (!x) return "(no HTTP exchange)";
    const auth = x.requestHeaders.get("authorization");
    let text = `${x.method} ${x.url}\n  Authorization: ${auth === null ? "(none)" : auth.replace(/^(Bearer .{8}).*$/, "$1...")}`;
    if (x.requestBody) text += `\n  request body: ${clip(x.requestBody)}`;
    if (x.error) return text + `\n  -> fetch failed: ${errorText(x.error)}`;
    const shown = {};
    for (const name of ["location", "request-id", "content-type"]) {
        if (x.responseHeaders.get(name) !== null) shown[name] = x.responseHeaders.get(name);
    }
    return text + `\n  -> ${x.status} ${JSON.stringify(shown)}\n  response body: ${clip(x.responseBody)}`;
}

function errorText(e) {
    if (e instanceof GraphError) {
        return `GraphError(statusCode=${e.statusCode}, code=${JSON.stringify(e.code)}, ` +
            `message=${JSON.stringify(e.message)}, requestId=${JSON.stringify(e.requestId)})`;
    }
    const cause = e?.cause ? ` (cause: ${e.cause.code ?? ""} ${e.cause.message ?? e.cause})` : "";
    return `${e?.name ?? typeof e}: ${e?.message ?? e}${cause}`;
}

// --- checks ---------------------------------------------------------------------------------

let passed = 0;
let failed = 0;

function section(title) {
    console.log(`--- ${title}`);
}

function check(name, ok, detail = "") {
    if (ok) {
        passed++;
        console.log(`PASS  ${name}`);
    } else {
        failed++;
        console.log(`FAIL  ${name}`);
        if (detail) console.log("      " + String(detail).replaceAll("\n", "\n      "));
        console.log("      last HTTP exchange: " + describe(last()).replaceAll("\n", "\n      "));
    }
    return ok;
}

function withTimeout(promise) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${CALL_TIMEOUT_MS} ms`)), CALL_TIMEOUT_MS);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

// call NAME PROMISE: the result of a client call that should succeed; a rejection is a
// FAIL of NAME (success is not counted here: the checks on the result are).
async function call(name, promise) {
    try {
        return { ok: true, value: await withTimeout(promise) };
    } catch (e) {
        check(name, false, `the client call failed: ${errorText(e)}`);
        return { ok: false, value: undefined };
    }
}

// expectError NAME PROMISE STATUS CODE: the call rejects with a GraphError carrying this
// statusCode and Graph error code, a message, the request-id of the response and the error
// body; returns the GraphError (or null).
async function expectError(name, promise, status, code) {
    let result;
    try {
        result = await withTimeout(promise);
    } catch (e) {
        if (!(e instanceof GraphError)) {
            check(name, false, `expected GraphError ${status} ${code}, got ${errorText(e)}`);
            return null;
        }
        const problems = [];
        if (e.statusCode !== status) problems.push(`statusCode ${e.statusCode}, expected ${status}`);
        if (e.code !== code) problems.push(`code ${JSON.stringify(e.code)}, expected ${JSON.stringify(code)}`);
        if (!e.message || !e.message.trim()) problems.push("message is empty");
        const headerId = last()?.responseHeaders.get("request-id");
        if (!GUID.test(e.requestId ?? "")) problems.push(`requestId ${JSON.stringify(e.requestId)} is not a GUID`);
        else if (e.requestId !== headerId) problems.push(`requestId ${e.requestId} is not the request-id header ${headerId}`);
        let body = null;
        try {
            body = JSON.parse(e.body);
        } catch {
            problems.push(`body is not JSON: ${JSON.stringify(e.body)}`);
        }
        if (body && (body.code !== code || body.message !== e.message)) {
            problems.push(`body ${e.body} does not hold the code and message`);
        }
        check(`${name}: GraphError statusCode ${status}, code ${code}, message, requestId, body`,
            problems.length === 0, problems.join("; "));
        return e;
    }
    check(name, false, `expected GraphError ${status} ${code}, the call succeeded with ${clip(JSON.stringify(result) ?? String(result))}`);
    return null;
}

function sentToken(exchange, token) {
    return exchange?.requestHeaders.get("authorization") === `Bearer ${token}`;
}

function sameSet(a, b) {
    return a.length === b.length && [...a].sort().join() === [...b].sort().join();
}

function makeClient(authToken, { customHosts = new Set([HOST]), baseUrl = BASE } = {}) {
    return Client.init({
        authProvider: (done) => done(null, authToken),
        baseUrl,
        defaultVersion: "beta",
        customHosts,
    });
}

// --- the sections ---------------------------------------------------------------------------

async function createAndGet(client) {
    section("create / get (POST, GET by id)");
    const name = "post the seed body (tests/fixtures/seed/request.json)";
    const { ok, value: created } = await call(name, client.api(PATH).post(SEED));
    if (!ok) return null;
    const exchange = last();
    check(`${name}: the client requested POST ${COLLECTION_URL}`,
        exchange.method === "POST" && exchange.url === COLLECTION_URL, describe(exchange));
    check(`${name}: the client sent Authorization: Bearer <the token> (https, customHosts)`,
        sentToken(exchange, TOKEN), describe(exchange));
    check(`${name}: 201 Created`, exchange.status === 201, describe(exchange));
    const id = created?.id;
    check(`${name}: id is a lower-case GUID (${id})`, GUID.test(id ?? ""), JSON.stringify(created));
    const differences = Object.keys(SEED)
        .filter((key) => created?.[key] !== SEED[key])
        .map((key) => `${key}: got ${JSON.stringify(created?.[key])}, sent ${JSON.stringify(SEED[key])}`);
    check(`${name}: every property comes back as sent`, differences.length === 0, differences.join("\n"));
    const location = exchange.responseHeaders.get("location");
    check(`${name}: Location is ${COLLECTION_URL}/{id} (https)`,
        location === `${COLLECTION_URL}/${id}`, `Location: ${location}`);
    if (!GUID.test(id ?? "")) return null;

    const got = await call("get by id", client.api(`${PATH}/${id}`).get());
    if (got.ok) {
        check(`get by id: the client requested GET ${COLLECTION_URL}/${id} with the token`,
            last().url === `${COLLECTION_URL}/${id}` && sentToken(last(), TOKEN), describe(last()));
        const keys = ["id", ...Object.keys(SEED)];
        const diff = keys.filter((key) => got.value?.[key] !== created[key]);
        check("get by id: equals what post returned", diff.length === 0,
            diff.map((key) => `${key}: ${JSON.stringify(got.value?.[key])} != ${JSON.stringify(created[key])}`).join("\n"));
    }

    const selected = await call("get by id with .select(targetId, expiredDateTime)",
        client.api(`${PATH}/${id}`).select(["targetId", "expiredDateTime"]).get());
    if (selected.ok) {
        const props = Object.keys(selected.value ?? {}).filter((key) => !key.startsWith("@odata."));
        check("get by id with .select(targetId, expiredDateTime): only id, targetId, expiredDateTime",
            sameSet(props, ["id", "targetId", "expiredDateTime"]) && selected.value.targetId === SEED.targetId,
            JSON.stringify(selected.value));
    }
    return id;
}

async function list(client) {
    section("list (.filter, .top, .count, .select) and $count");
    // Five assignments of their own policy, so the filter sees exactly these.
    const policy = randomUUID();
    const ids = [];
    for (let i = 0; i < 5; i++) {
        const body = { ...SEED, assignmentPolicyId: policy, targetId: randomUUID() };
        const { ok, value } = await call(`post assignment ${i + 1} of 5 under policy ${policy}`, client.api(PATH).post(body));
        if (ok && GUID.test(value?.id ?? "")) ids.push(value.id);
    }
    check("5 assignments created under a fresh assignmentPolicyId", ids.length === 5, `ids: ${ids}`);
    const filter = `assignmentPolicyId eq '${policy}'`;

    let r = await call(".filter(policy).get()", client.api(PATH).filter(filter).get());
    if (r.ok) {
        const got = (r.value?.value ?? []).map((x) => x.id);
        check(".filter(policy).get(): exactly the 5, no @odata.nextLink",
            sameSet(got, ids) && r.value["@odata.nextLink"] === undefined, `ids: ${got}`);
        check(".filter(policy).get(): the client sent $filter and the token",
            new URL(last().url).searchParams.get("$filter") === filter && sentToken(last(), TOKEN), describe(last()));
        const context = r.value?.["@odata.context"];
        check(".filter(policy).get(): @odata.context is https and on this host",
            typeof context === "string" && context.startsWith(`${BASE}beta/$metadata#`), `@odata.context: ${context}`);
    }

    r = await call(".filter(policy).count(true).get()", client.api(PATH).filter(filter).count(true).get());
    if (r.ok) {
        check(".filter(policy).count(true).get(): @odata.count is 5, with the 5",
            r.value?.["@odata.count"] === 5 && r.value?.value?.length === 5,
            `@odata.count: ${JSON.stringify(r.value?.["@odata.count"])}, ${r.value?.value?.length} items`);
    }

    let firstPage = null;
    r = await call(".filter(policy).top(2).count(true).get()", client.api(PATH).filter(filter).top(2).count(true).get());
    if (r.ok) {
        firstPage = r.value;
        const next = r.value?.["@odata.nextLink"];
        check(".filter(policy).top(2).count(true).get(): 2 items, @odata.count 5",
            r.value?.value?.length === 2 && r.value?.["@odata.count"] === 5, clip(JSON.stringify(r.value)));
        check(".filter(policy).top(2).count(true).get(): @odata.nextLink is an https URL of this collection",
            typeof next === "string" && next.startsWith(`${COLLECTION_URL}?`), `@odata.nextLink: ${next}`);
    }

    if (firstPage) {
        // PageIterator follows @odata.nextLink with client.api(nextLink).get().
        const seen = [];
        const before = exchanges.length;
        const iterator = new PageIterator(client, firstPage, (item) => {
            seen.push(item.id);
            return true;
        });
        const it = await call("PageIterator over .filter(policy).top(2)", iterator.iterate());
        if (it.ok) {
            const pages = exchanges.slice(before);
            check("PageIterator: every created id seen exactly once",
                seen.length === 5 && sameSet(seen, ids), `seen: ${seen}`);
            check("PageIterator: 2 more pages fetched, 3 in all", pages.length === 2 && iterator.isComplete(),
                pages.map(describe).join("\n"));
            check("PageIterator: each next page was requested at its https @odata.nextLink, with $skiptoken",
                pages.length > 0 && pages.every((x) => x.url.startsWith(`${COLLECTION_URL}?`) && /[?&]\$skiptoken=/.test(x.url)),
                pages.map((x) => x.url).join("\n"));
            check("PageIterator: the next-page requests carried the token", pages.length > 0 && pages.every((x) => sentToken(x, TOKEN)),
                pages.map(describe).join("\n"));
            check("PageIterator: each page answered 200 with @odata.count 5",
                pages.length > 0 && pages.every((x) => x.status === 200 && JSON.parse(x.responseBody)["@odata.count"] === 5),
                pages.map(describe).join("\n"));
        }
    }

    r = await call(".filter(policy).top(2).select(targetId).get()",
        client.api(PATH).filter(filter).top(2).select("targetId").get());
    if (r.ok) {
        const items = r.value?.value ?? [];
        check(".filter(policy).top(2).select(targetId).get(): items hold only id and targetId",
            items.length === 2 && items.every((x) => sameSet(Object.keys(x).filter((k) => !k.startsWith("@odata.")), ["id", "targetId"])),
            clip(JSON.stringify(items)));
    }

    r = await call("$count with .filter(policy)", client.api(`${PATH}/$count`).filter(filter).get());
    if (r.ok) {
        check("$count with .filter(policy): the client reads the text/plain answer 5",
            String(r.value).trim() === "5", `got ${JSON.stringify(r.value)}`);
    }
    return ids;
}

async function errors(client) {
    section("errors as GraphError (400, 401, 403, 404)");
    await expectError("400: .filter('assignmentPolicyId eq') does not parse",
        client.api(PATH).filter("assignmentPolicyId eq").get(), 400, "BadRequest");

    const wrong = "not-a-valid-token";
    await expectError("401: a client whose authProvider hands out a wrong token",
        makeClient(wrong).api(PATH).top(1).get(), 401, "InvalidAuthenticationToken");
    check("401: the client did send Authorization: Bearer <the wrong token>", sentToken(last(), wrong), describe(last()));

    // Without customHosts, 127.0.0.1 is no Graph host: the client sends no token at all.
    await expectError("401: a client without customHosts", makeClient(TOKEN, { customHosts: null }).api(PATH).top(1).get(),
        401, "InvalidAuthenticationToken");
    check("401: without customHosts the client sent no Authorization header",
        last()?.requestHeaders.get("authorization") === null, describe(last()));

    await expectError("403: post with an EntitlementManagement.Read.All token",
        makeClient(READ_TOKEN).api(PATH).post({ ...SEED, assignmentPolicyId: randomUUID() }), 403, "Authorization_RequestDenied");

    const unknown = randomUUID();
    await expectError(`404: get of an unknown id (${unknown})`, client.api(`${PATH}/${unknown}`).get(), 404,
        "Request_ResourceNotFound");
}

async function remove(client, id) {
    const r = await call(`delete ${id}`, client.api(`${PATH}/${id}`).delete());
    if (r.ok) {
        check(`delete ${id}: DELETE ${COLLECTION_URL}/${id} with the token answered 204`,
            last().method === "DELETE" && last().url === `${COLLECTION_URL}/${id}` && sentToken(last(), TOKEN) && last().status === 204,
            describe(last()));
    }
    await expectError(`get ${id} after delete`, client.api(`${PATH}/${id}`).get(), 404, "Request_ResourceNotFound");
    await expectError(`delete ${id} again`, client.api(`${PATH}/${id}`).delete(), 404, "Request_ResourceNotFound");
}

async function transport() {
    section("transport (https only)");
    // Plain http to the TLS port: no HTTP answer at all (the client gets a fetch error).
    const plain = `http://${BASE_URL.host}/`;
    try {
        const value = await withTimeout(makeClient(TOKEN, { baseUrl: plain }).api(PATH).top(1).get());
        check(`plain http to ${plain} is refused`, false, `the call succeeded: ${clip(JSON.stringify(value))}`);
    } catch (e) {
        const x = last();
        check(`plain http to ${plain} is refused: no HTTP answer, fetch fails`,
            x.url.startsWith(plain) && x.error !== null && x.status === 0, `${errorText(e)}\n${describe(x)}`);
        if (VERBOSE) console.log(`      ${errorText(x.error)}`);
    }

    // The same client in a Node without the test CA (NODE_EXTRA_CA_CERTS unset) must refuse
    // the server's certificate: proves the TLS really is verified against that CA.
    const childEnv = { ...process.env };
    delete childEnv.NODE_EXTRA_CA_CERTS;
    const script = `
        const { createRequire } = require("node:module");
        const r = createRequire(${JSON.stringify(join(JS_DIR, "package.json"))});
        const { Client } = r("@microsoft/microsoft-graph-client");
        const realFetch = globalThis.fetch;
        let cause = "";
        globalThis.fetch = (...args) => realFetch(...args).catch((e) => {
            cause = (e.cause && (e.cause.code || e.cause.message)) || "";
            throw e;
        });
        Client.init({ authProvider: (done) => done(null, "x"), baseUrl: ${JSON.stringify(BASE)},
                      defaultVersion: "beta", customHosts: new Set([${JSON.stringify(HOST)}]) })
            .api(${JSON.stringify(PATH)}).get()
            .then(() => { console.log("the call succeeded"); process.exit(0); },
                  (e) => { console.log(e.name + ": " + e.message + "; fetch cause: " + cause); process.exit(3); });
    `;
    const child = spawnSync(process.execPath, ["-e", script], { env: childEnv, encoding: "utf8", timeout: CALL_TIMEOUT_MS });
    const output = `exit ${child.status}, stdout: ${child.stdout.trim()}, stderr: ${clip(child.stderr ?? "")}`;
    check("without NODE_EXTRA_CA_CERTS the client refuses the server certificate (unknown issuer)",
        child.status === 3 && /fetch cause: (UNABLE_TO_GET_ISSUER_CERT_LOCALLY|UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED_CERT_IN_CHAIN)/.test(child.stdout),
        output);
    if (VERBOSE) console.log(`      ${output}`);
}

async function main() {
    console.log(`Microsoft Graph JavaScript client ${CLIENT_VERSION} (Node ${process.version}) against ${BASE}beta`);
    const client = makeClient(TOKEN);
    const id = await createAndGet(client);
    const ids = await list(client);
    await errors(client);
    section("delete (then 404)");
    if (id) await remove(client, id);
    else check("delete: skipped, no assignment was created", false);
    if (ids.length) await remove(client, ids[0]);
    await transport();
    console.log(`\n${passed} passed, ${failed} failed`);
    process.exit(failed === 0 ? 0 : 1);
}

main().catch((e) => {
    console.log(`FAIL  the test itself: ${e?.stack ?? e}`);
    console.log(`\n${passed} passed, ${failed + 1} failed`);
    process.exit(1);
});
