// A model in a worker thread, as an Electron app (or any UI process) should run it: the main thread
// never blocks on model work, the reply streams to it chunk by chunk, and ending the worker in the
// middle of a generation (worker.terminate()) leaves the main process running.
//
//   node examples/model-worker.mjs <model-dir> [image] [--stop-after <chunks>]
//
// In Electron, start the same worker from the main process (or use a utilityProcess with the same
// message protocol) and forward the chunks to a renderer over IPC.
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

if (isMainThread) {
  const args = process.argv.slice(2);
  const stopAt = args.indexOf('--stop-after');
  let stopAfterFirst = stopAt >= 0 ? Number(args.splice(stopAt, 2)[1]) : Infinity;
  const [model, image] = args;
  if (!model) {
    process.stderr.write('usage: node examples/model-worker.mjs <model-dir> [image] [--stop-after <chunks>]\n');
    process.exit(2);
  }

  // The event loop stays free while the worker computes: this timer keeps ticking.
  let ticks = 0;
  const heartbeat = setInterval(() => ticks++, 10);

  const ask = (text) =>
    new Promise((resolve, reject) => {
      const worker = new Worker(new URL(import.meta.url), { workerData: { model, image, text } });
      let chunks = 0;
      let settled = false;
      const settle = (r) => {
        if (!settled) (settled = true), resolve({ chunks, ...r });
      };
      worker.on('message', async (m) => {
        if (settled) return;
        if (m.type === 'chunk') {
          process.stdout.write(m.text);
          if (++chunks >= stopAfterFirst) {
            settle({ terminated: true });
            await worker.terminate(); // mid-generation: safe, the process carries on
          }
        } else if (m.type === 'done') {
          settle({ terminated: false, finishReason: m.finishReason });
        }
      });
      worker.on('error', (err) => !settled && ((settled = true), reject(err)));
      worker.on('exit', (code) => settle({ terminated: true, exitCode: code }));
    });

  const first = await ask('Describe the image.');
  process.stdout.write(`\n[main] first worker ${first.terminated ? 'terminated' : 'finished'} after ${first.chunks} chunks\n`);
  // The process still serves: a second worker answers in full.
  stopAfterFirst = Infinity;
  const second = await ask('What colours do you see?');
  clearInterval(heartbeat);
  process.stdout.write(`\n[main] second worker ${second.finishReason ? `finished (${second.finishReason})` : `exited (code ${second.exitCode})`} after ${second.chunks} chunks; ${ticks} timer ticks meanwhile\n`);
} else {
  const { loadModel } = await import('videollama3-node');
  const model = await loadModel({ model: workerData.model, threads: 1 });
  const gen = model.generate({ text: workerData.text, images: workerData.image ? [workerData.image] : [] }, { maxTokens: 48 });
  for await (const text of gen) parentPort.postMessage({ type: 'chunk', text });
  const { finishReason } = await gen.result;
  await model.dispose();
  parentPort.postMessage({ type: 'done', finishReason });
}
