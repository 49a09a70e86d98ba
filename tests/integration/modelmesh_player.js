// Plays ModelMesh's side of the model-runtime SPI against memfit replicas
// with the official Node gRPC client (@grpc/grpc-js, @grpc/proto-loader),
// for tests/integration/serve_modelmesh.sh. Usage:
//   node modelmesh_player.js PROTO_DIR call ADDR METHOD JSON [CANCEL_MS]
// prints the answer (or {"error": code, "details": message}) as one JSON line.
'use strict';
const path = require('path');
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');

const [protoDir, cmd, addr, method, json, cancelMs] = process.argv.slice(2);
const opts = {keepCase: true, longs: String, enums: String, defaults: true, oneofs: true};
const mm = grpc.loadPackageDefinition(
    loader.loadSync(path.join(protoDir, 'mmesh/model-runtime.proto'), opts)).mmesh;
const inf = grpc.loadPackageDefinition(
    loader.loadSync(path.join(protoDir, 'inference/grpc_service.proto'), opts)).inference;

function client(a, service) {
    return new service(a, grpc.credentials.createInsecure(),
                       {'grpc.max_receive_message_length': 64 << 20});
}

function call(a, m, req, meta, cancelAfter) {
    const isInference = /^[A-Z]/.test(m);
    const c = client(a, isInference ? inf.GRPCInferenceService : mm.ModelRuntime);
    return new Promise((resolve) => {
        const md = new grpc.Metadata();
        for (const [k, v] of Object.entries(meta || {})) md.set(k, v);
        const started = Date.now();
        const h = c[m](req, md, {deadline: Date.now() + 120000}, (err, res) => {
            const ms = Date.now() - started;
            c.close();
            if (err) resolve({error: grpc.status[err.code], details: err.details, ms});
            else resolve(Object.assign({ms}, res));
        });
        if (cancelAfter !== undefined) setTimeout(() => h.cancel(), cancelAfter);
    });
}

async function main() {
    if (cmd !== 'call') throw new Error('unknown command ' + cmd);
    const req = JSON.parse(json || '{}');
    let meta = {};
    if (req.__metadata) {
        meta = req.__metadata;
        delete req.__metadata;
    }
    for (const k of ['raw_input_contents'])
        if (req[k]) req[k] = req[k].map((b) => Buffer.from(b, 'base64'));
    for (const i of req.inputs || [])
        if (i.contents && i.contents.bytes_contents)
            i.contents.bytes_contents = i.contents.bytes_contents.map((b) => Buffer.from(b, 'base64'));
    const res = await call(addr, method, req, meta, cancelMs === undefined ? undefined : +cancelMs);
    if (res.raw_output_contents)
        res.raw_output_contents = res.raw_output_contents.map((b) => b.toString('base64'));
    for (const o of res.outputs || [])
        if (o.contents && o.contents.bytes_contents)
            o.contents.bytes_contents = o.contents.bytes_contents.map((b) => b.toString('utf8'));
    console.log(JSON.stringify(res));
}
main().catch((e) => { console.error(e); process.exit(1); });
