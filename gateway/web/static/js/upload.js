// Upload: drag and drop, tus-js-client to /files/ (resumes after a network cut or a page
// reload through its fingerprint storage), then the transcode's progress until ready.
import { api, currentUser, token } from './session.js';

const CHUNK_BYTES = 1024 * 1024;
const POLL_MS = 1500;
const SPEED_WINDOW_MS = 3000;
const byId = (id) => document.getElementById(id);
const form = byId('upload-form');
const dropzone = byId('dropzone');
const fileInput = byId('file-input');
let upload = null;

function showError(message) {
  const error = byId('upload-error');
  error.textContent = message;
  error.hidden = !message;
}

function humanRate(bytesPerSecond) {
  if (bytesPerSecond >= 1024 * 1024) return `${(bytesPerSecond / 1024 / 1024).toFixed(1)} MB/s`;
  return `${Math.round(bytesPerSecond / 1024)} KB/s`;
}

function speedMeter() {
  const samples = [];
  return (bytes) => {
    const now = performance.now();
    samples.push([now, bytes]);
    while (samples.length > 2 && now - samples[0][0] > SPEED_WINDOW_MS) samples.shift();
    const [t0, b0] = samples[0];
    return now > t0 ? ((bytes - b0) * 1000) / (now - t0) : 0;
  };
}

async function followTranscode(uploadId) {
  byId('transcode-block').hidden = false;
  const state = byId('transcode-state');
  const bar = byId('transcode-progress');
  let videoId = '';
  for (;;) {
    try {
      if (!videoId) {
        const status = await api(`/api/v2/upload/${encodeURIComponent(uploadId)}`);
        if (['rejected', 'expired', 'cancelled'].includes(status.state)) {
          state.textContent = `${status.state}: ${status.reason || ''}`;
          return;
        }
        state.textContent = status.state === 'ready' ? 'queued' : 'checking the file';
        videoId = status.video_id || '';
      } else {
        const info = await api(`/api/v2/videos/${encodeURIComponent(videoId)}`);
        bar.value = info.progress || 0;
        if (info.status === 'failed') {
          state.textContent = `failed: ${info.error || ''}`;
          return;
        }
        if (info.status === 'ready') {
          bar.value = 100;
          state.textContent = 'ready';
          const link = byId('video-link');
          link.href = `/v/${encodeURIComponent(videoId)}`;
          link.hidden = false;
          return;
        }
        state.textContent = `transcoding ${Math.round(info.progress || 0)}%`;
      }
    } catch {
      // the catalog may not know the video yet: poll again
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

function start(file) {
  showError('');
  const tus = window.tus;
  const speed = speedMeter();
  byId('progress-block').hidden = false;
  byId('transcode-block').hidden = true;
  byId('upload-name').textContent = file.name;
  byId('upload-state').textContent = 'Uploading';
  const title = byId('upload-title').value.trim() || file.name.replace(/\.[^.]+$/, '');
  const metadata = { filename: file.name, filetype: file.type || 'application/octet-stream', title };
  const description = byId('upload-description').value;
  if (description) metadata.description = description;

  upload = new tus.Upload(file, {
    endpoint: '/files/',
    chunkSize: CHUNK_BYTES,
    retryDelays: [0, 1000, 2000, 3000, 5000, 8000],
    metadata,
    headers: { Authorization: `Bearer ${token()}` },
    storeFingerprintForResuming: true,
    removeFingerprintOnSuccess: true,
    onProgress(sent, total) {
      const percent = total ? (sent / total) * 100 : 0;
      byId('upload-progress').value = percent;
      byId('upload-percent').textContent = percent.toFixed(0);
      byId('upload-speed').textContent = humanRate(speed(sent));
    },
    onError(error) {
      // Retries are spent (or the server said no). Offline: try again when back.
      if (!navigator.onLine) {
        byId('upload-state').textContent = 'Offline — resumes when the network is back';
        window.addEventListener('online', () => upload.start(), { once: true });
        return;
      }
      byId('upload-state').textContent = 'Stopped';
      showError(`Upload failed: ${error.message || error}`);
    },
    onSuccess() {
      byId('upload-state').textContent = 'Uploaded';
      byId('drop-help').textContent = 'Drop another video here, or press Enter to choose one.';
      byId('upload-pause').hidden = true;
      byId('upload-resume').hidden = true;
      const uploadId = upload.url.replace(/\/+$/, '').split('/').pop();
      followTranscode(uploadId);
    },
  });
  // A reload (or a second try) with the same file picks up where the last one stopped.
  upload.findPreviousUploads().then((previous) => {
    if (previous.length) {
      upload.resumeFromPreviousUpload(previous[0]);
      byId('upload-state').textContent = 'Resuming';
    }
    upload.start();
  });
}

function pick(files) {
  if (!currentUser()) {
    showError('Log in first.');
    return;
  }
  const [file] = files;
  if (file) start(file);
}

if (!currentUser()) {
  document.querySelector('.needs-login').hidden = false;
} else {
  window.tus.defaultOptions.urlStorage?.findAllUploads?.().then((unfinished) => {
    if (unfinished.length) {
      byId('drop-help').textContent =
        `${unfinished.length} unfinished upload(s): choose the same file again to resume it.`;
    }
  }).catch(() => {});
}

dropzone.addEventListener('click', (event) => {
  // The input sits inside the zone: its own click bubbles here and must not reopen it.
  if (event.target !== fileInput) fileInput.click();
});
dropzone.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' || event.key === ' ') {
    event.preventDefault();
    fileInput.click();
  }
});
dropzone.addEventListener('dragover', (event) => {
  event.preventDefault();
  dropzone.classList.add('over');
});
dropzone.addEventListener('dragleave', () => dropzone.classList.remove('over'));
dropzone.addEventListener('drop', (event) => {
  event.preventDefault();
  dropzone.classList.remove('over');
  pick(event.dataTransfer.files);
});
fileInput.addEventListener('change', () => pick(fileInput.files));
form.addEventListener('submit', (event) => event.preventDefault());
byId('upload-pause').addEventListener('click', () => {
  upload?.abort();
  byId('upload-state').textContent = 'Paused';
  byId('upload-pause').hidden = true;
  byId('upload-resume').hidden = false;
});
byId('upload-resume').addEventListener('click', () => {
  upload?.start();
  byId('upload-state').textContent = 'Uploading';
  byId('upload-pause').hidden = false;
  byId('upload-resume').hidden = true;
});
dropzone.dataset.ready = 'true'; // the listeners are attached (tests wait for this)
