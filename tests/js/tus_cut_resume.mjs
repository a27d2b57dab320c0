// Drives the official tus-js-client (npm "tus-js-client", unchanged) under Node:
// each file is uploaded once with retries off, so a connection cut mid-PATCH ends
// the attempt with an error; then a fresh Upload finds the stored URL by the file's
// fingerprint (FileUrlStorage, as an app restarted after a crash would) and resumes.
//
// Env: ENDPOINT (the /files/ URL, usually a cutting proxy), TOKEN (a gateway JWT),
// PLAN (a JSON file: a list of file paths), CONCURRENCY, STORAGE_DIR (for the URL
// stores). Prints one JSON line: one record per file, for the pytest side to check.
import { createReadStream } from 'node:fs';
import path from 'node:path';
import { readFile } from 'node:fs/promises';
import { FileUrlStorage, Upload } from 'tus-js-client';

const { ENDPOINT, TOKEN, PLAN, STORAGE_DIR } = process.env;
const CONCURRENCY = Number(process.env.CONCURRENCY || '4');
// Retries on the resumed upload cover a cut PATCH that still holds the upload's
// lock (423) or is still storing its bytes (409 on a stale HEAD).
const RESUME_RETRIES = [50, 200, 500, 1000, 2000, 4000];

function options(file, storage, retryDelays) {
  return {
    endpoint: ENDPOINT,
    headers: { Authorization: `Bearer ${TOKEN}` },
    metadata: { filename: path.basename(file), title: 'tus-js-client upload' },
    urlStorage: storage,
    storeFingerprintForResuming: true,
    retryDelays,
  };
}

function run(upload) {
  return new Promise((resolve) => {
    upload.options.onSuccess = () => resolve({ ok: true, url: upload.url });
    upload.options.onError = (error) => resolve({ ok: false, url: upload.url, error: String(error) });
    upload.start();
  });
}

async function cutThenResume(file, index) {
  const storage = new FileUrlStorage(path.join(STORAGE_DIR, `urls-${index}.json`));
  const first = await run(new Upload(createReadStream(file), options(file, storage, null)));
  const again = new Upload(createReadStream(file), options(file, storage, RESUME_RETRIES));
  const previous = await again.findPreviousUploads();
  const record = {
    file,
    firstOk: first.ok,
    firstError: first.error ?? null,
    firstUrl: first.url ?? null,
    previousUrls: previous.map((p) => p.uploadUrl),
  };
  if (previous.length > 0) again.resumeFromPreviousUpload(previous[0]);
  const second = await run(again);
  return { ...record, resumedOk: second.ok, resumedError: second.error ?? null, url: second.url };
}

async function main() {
  const files = JSON.parse(await readFile(PLAN, 'utf8'));
  const results = new Array(files.length);
  let next = 0;
  async function worker() {
    while (next < files.length) {
      const index = next++;
      results[index] = await cutThenResume(files[index], index);
    }
  }
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, files.length) }, worker));
  // Exit once written: idle keep-alive sockets must not hold the process open.
  process.stdout.write(`${JSON.stringify(results)}\n`, () => process.exit(0));
}

main().catch((error) => {
  process.stderr.write(`${error?.stack ?? error}\n`);
  process.exit(1);
});
