// The render farm console: reads and writes only through the REST API (/api/...) with the browser session.
// Text from the API is always set with textContent, never parsed as HTML.
"use strict";

const FINAL = new Set(["COMPLETED", "FAILED", "CANCELLED"]);
const POLL_MS = 1500;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = value;
    else if (name === "className") node.className = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) node.append(child);
  return node;
}

function csrfToken() {
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  return input ? input.value : "";
}

// A GET remembered by URL with its ETag: the next poll sends If-None-Match and a 304 reuses the last body.
const etags = new Map();
async function getJson(url) {
  const seen = etags.get(url);
  const headers = { Accept: "application/json" };
  if (seen) headers["If-None-Match"] = seen.etag;
  const resp = await fetch(url, { headers, cache: "no-store", credentials: "same-origin" });
  if (resp.status === 304 && seen) return { status: 200, body: seen.body, fresh: false };
  const body = await resp.json().catch(() => null);
  const etag = resp.headers.get("ETag");
  if (resp.ok && etag) etags.set(url, { etag, body });
  return { status: resp.status, body, fresh: true };
}

async function send(method, url, body, extraHeaders = {}) {
  const headers = { Accept: "application/json", "X-CSRFToken": csrfToken(), ...extraHeaders };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(url, {
    method, headers, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: resp.status, body: await resp.json().catch(() => null) };
}

function errorText(body, fallback) {
  const error = body && body.error;
  if (!error) return fallback;
  const details = error.details && typeof error.details === "object" ? Object.entries(error.details) : [];
  const extra = details.length && error.code === "invalid"
    ? " " + details.map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(" ") : JSON.stringify(v)}`).join("; ")
    : "";
  return (error.message || fallback) + (extra && !error.message.includes(extra.trim()) ? " (" + extra.trim() + ")" : "");
}

function showMessage(text, isError = false) {
  const box = document.getElementById("message");
  if (!box) return;
  box.hidden = !text;
  box.textContent = text || "";
  box.classList.toggle("error", isError);
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

function age(iso) {
  if (!iso) return "";
  return duration((Date.now() - Date.parse(iso)) / 1000) + " ago";
}

function time(iso) {
  return iso ? new Date(iso).toLocaleTimeString() : "";
}

function badge(status) {
  return el("span", { className: `badge ${status}`, text: status });
}

function progressBar(progress) {
  const percent = progress.frames_total ? Math.round((100 * progress.frames_done) / progress.frames_total) : 0;
  const bar = el("div", { className: "bar" });
  bar.style.width = `${percent}%`;
  return el("div", {
    className: "progress", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": "100",
    "aria-valuenow": String(percent), "aria-label": "Frames done",
  }, bar);
}

function progressText(job) {
  const p = job.progress;
  let text = `${p.frames_done} / ${p.frames_total} frames`;
  if (!FINAL.has(job.status) && p.eta_seconds !== null) text += ` · ETA ${duration(p.eta_seconds)}`;
  return text;
}

// --- Jobs page --------------------------------------------------------------------------------------
function jobsPage() {
  const tbody = document.querySelector("#jobs tbody");
  const filter = document.getElementById("status-filter");
  const newer = document.getElementById("newer");
  const older = document.getElementById("older");
  const params = new URLSearchParams(location.search);
  filter.value = params.get("status") || "";
  let cursors = [null]; // cursors[i] loads page i
  let page = 0;
  let next = null;
  let timer = null;

  function row(job) {
    const link = el("a", { href: `/jobs/${job.id}`, text: job.scene.name });
    return el("tr", { "data-job-id": job.id },
      el("td", { className: "scene" }, link),
      el("td", {}, badge(job.status)),
      el("td", { className: "progress-cell" }, progressBar(job.progress), el("small", { text: progressText(job) })),
      el("td", { text: job.priority }),
      el("td", { title: job.created_at, text: age(job.created_at) }));
  }

  async function load() {
    clearTimeout(timer);
    const query = new URLSearchParams({ limit: "20" });
    const cursor = cursors[page];
    if (cursor) query.set("cursor", cursor);
    else if (filter.value) query.set("status", filter.value);
    try {
      const { status, body } = await getJson(`/api/jobs?${query}`);
      if (status !== 200) { showMessage(errorText(body, `The API answered ${status}.`), true); return schedule(5000); }
      showMessage("");
      tbody.replaceChildren(...body.jobs.map(row));
      next = body.next_cursor;
      // A filtered page looks through a bounded number of jobs: one that found none may not be the end.
      document.getElementById("empty").hidden = body.jobs.length > 0 || Boolean(next);
      document.getElementById("empty-page").hidden = body.jobs.length > 0 || !next;
      newer.disabled = page === 0;
      older.disabled = !next;
      schedule(body.jobs.some((j) => !FINAL.has(j.status)) ? POLL_MS : 5000);
    } catch (err) {
      showMessage("Cannot reach the API; retrying.", true);
      schedule(5000);
    }
  }
  function schedule(ms) { timer = setTimeout(load, ms); }

  filter.addEventListener("change", () => {
    const url = new URL(location.href);
    if (filter.value) url.searchParams.set("status", filter.value); else url.searchParams.delete("status");
    history.replaceState(null, "", url);
    cursors = [null]; page = 0; load();
  });
  older.addEventListener("click", () => { cursors[page + 1] = next; page += 1; load(); });
  newer.addEventListener("click", () => { page = Math.max(0, page - 1); load(); });
  load();
}

// --- Job page ---------------------------------------------------------------------------------------
const UNFINISHED_CHUNK = new Set(["QUEUED", "PROCESSING"]);
// Once the job is final, its chunks can still move: the messages of queued chunks of a cancelled job are
// dropped (the chunk marked CANCELLED) as workers receive them. The page polls the chunks alone until none
// is unfinished, for at most this many more polls, then stops.
const SETTLE_POLLS = 40;
const SETTLE_MS = 3000;

function webhookText(hook) {
  // "delivered · try 3: 200 (tries: 500, 500, 200)": the state and every try kept on the job
  const tries = hook.deliveries.map((d) => (d.status_code !== undefined ? String(d.status_code) : d.error));
  return `${hook.state} · ${hook.url}` + (tries.length ? ` (tries: ${tries.join(", ")})` : "");
}

// "320×180 png"; a Blender job's null width/height mean the scene file's own: the frames' real size once one
// has loaded (`measured`), else said in words.
function sizeText(scene, measured) {
  const { width, height, output_format: format } = scene;
  if (width !== null && height !== null) return `${width}×${height} ${format}`;
  if (measured) return `${measured.width}×${measured.height} ${format} (the file's)`;
  if (width === null && height === null) return `the file's resolution, ${format}`;
  return `${width ?? "the file's width"}×${height ?? "the file's height"} ${format}`;
}

// A chunk has a render log only if its renderer writes one (Blender; the simulated renderer writes none) and
// it has started; asking for any other would be a 404, which the browser reports as a console error.
function chunkHasLog(job, task) {
  return job.renderer === "blender" && task.started_at !== null;
}

function framesNote(job, count) {
  const each = count ? " Each links to its file." : "";
  if (job.status === "COMPLETED") return `All ${count} frames.${each}`;
  if (job.status === "CANCELLED" || job.status === "FAILED") {
    const how = job.status === "CANCELLED" ? "was cancelled" : "failed";
    const frames = `${count} frame${count === 1 ? "" : "s"}`;
    return count ? `The ${frames} rendered before the job ${how}.${each}` : `No frame was rendered before the job ${how}.`;
  }
  return "Frames appear here as they finish. Each links to its file.";
}

// The step running now (or next), if the job's frames are done and it has steps left.
function runningStep(job) {
  return (job.steps || []).find((s) => s.status === "PROCESSING" || s.status === "QUEUED") || null;
}

function stepName(step) {
  return `${step.type} ${step.format} at ${step.fps} fps`;
}

// "video.mp4 · 48 frames at 24 fps · 2.0 s · 1.2 MB"
function videoCaption(video) {
  const name = new URL(video.url).pathname.split("/").pop();
  const size = video.size >= 1e6 ? `${(video.size / 1e6).toFixed(1)} MB` : `${Math.max(1, Math.round(video.size / 1e3))} kB`;
  return `${name} · ${video.frames} frames at ${video.fps} fps · ${video.duration.toFixed(1)} s · ${size}`;
}

function jobPage() {
  const root = document.getElementById("job");
  const id = root.dataset.jobId;
  const api = `/api/jobs/${id}`;
  const frames = document.getElementById("frames");
  const shown = new Map(); // frame number -> <a> of its thumbnail
  let job = null; // the last job read
  let measured = null; // {width, height} of the first frame that loaded
  let actionNote = null; // {text, error, while}: what Cancel/Retry answered, shown while the job's status is in `while`
  let timer = null;
  let inFlight = false;
  let again = false;
  let settlePolls = 0;

  function fact(name, value) {
    return el("div", {}, el("dt", { text: name }), el("dd", { text: value === null || value === undefined ? "–" : String(value) }));
  }

  function renderFacts() {
    document.getElementById("facts").replaceChildren(
      fact("Frames", `${job.frames} (${job.progress.frames_total})`),
      fact("Size", sizeText(job.scene, measured)),
      fact("Samples", job.scene.samples === null ? "the file's" : job.scene.samples),
      fact("Chunk size", job.chunk_size),
      fact("Priority", job.priority),
      fact("Attempt", job.attempt),
      fact("Created", new Date(job.created_at).toLocaleString()),
      fact("Finished", job.finished_at ? new Date(job.finished_at).toLocaleString() : null),
      ...(job.webhook ? [fact("Webhook", webhookText(job.webhook))] : []),
    );
  }

  function renderJob(body) {
    job = body;
    const status = document.getElementById("status");
    status.className = `badge ${job.status}`;
    status.textContent = job.status;
    const percent = job.progress.frames_total ? Math.round((100 * job.progress.frames_done) / job.progress.frames_total) : 0;
    const bar = root.querySelector(".progress");
    bar.setAttribute("aria-valuenow", String(percent));
    bar.querySelector(".bar").style.width = `${percent}%`;
    const step = job.status === "PROCESSING" ? runningStep(job) : null;
    document.getElementById("progress-text").textContent =
      `${progressText(job)} · ${job.progress.chunks_done} / ${job.progress.chunks_total} chunks` +
      (step ? ` · ${stepName(step)}: ${step.progress.frames_done} / ${step.progress.frames_total} frames encoded` : "");
    renderFacts();
    renderSteps();
    const error = document.getElementById("error");
    error.hidden = !job.error;
    error.textContent = job.error ? `${job.error} (${job.error_code})` : "";
    const warnings = document.getElementById("warnings");
    warnings.hidden = !(job.warnings && job.warnings.length);
    warnings.replaceChildren(...(job.warnings || []).map((w) => el("li", { text: w })));
    document.getElementById("cancel").hidden = !["QUEUED", "PROCESSING"].includes(job.status);
    document.getElementById("retry").hidden = !["FAILED", "CANCELLED"].includes(job.status);
    if (actionNote && actionNote.while && !actionNote.while.has(job.status)) actionNote = null;
    showMessage(actionNote ? actionNote.text : "", Boolean(actionNote && actionNote.error));
    document.getElementById("frames-note").textContent = framesNote(job, shown.size);
    const results = job.results;
    document.getElementById("finished").hidden = !results;
    if (results) {
      showVideos(results.videos || []);
      setImage("animation", results.animation_url);
      setImage("contact-sheet", results.preview_url);
      const manifest = document.getElementById("manifest");
      manifest.hidden = !results.manifest_url;
      if (results.manifest_url) manifest.href = results.manifest_url;
    }
  }

  function renderSteps() {
    const section = document.getElementById("steps-section");
    section.hidden = !(job.steps && job.steps.length);
    if (section.hidden) return;
    document.querySelector("#steps tbody").replaceChildren(...job.steps.map((step) => {
      let log = el("span", { className: "muted", title: "A step has a log once it started.", text: "–" });
      if (step.started_at !== null) {
        log = el("button", { type: "button", className: "secondary", title: `The log of step ${step.index}`, text: "Show" });
        log.addEventListener("click", () => showStepLog(step.index));
      }
      const p = step.progress;
      return el("tr", {},
        el("td", { text: step.index }),
        el("td", { text: stepName(step) }),
        el("td", {}, badge(step.status)),
        el("td", { className: "progress-cell" }, progressBar(p), el("small", { text: `${p.frames_done} / ${p.frames_total}` })),
        el("td", { text: step.failures }),
        el("td", { className: "error", text: step.error ? `${step.error} (${step.error_code})` : "" }),
        el("td", {}, log));
    }));
  }

  async function showStepLog(index) {
    const box = document.getElementById("step-log");
    box.hidden = false;
    box.textContent = `Loading the log of step ${index}…`;
    let status, body;
    try {
      ({ status, body } = await send("GET", `${api}/steps/${index}/log`));
    } catch (err) {
      box.textContent = "Cannot reach the API.";
      return;
    }
    if (status === 404) box.textContent = `Step ${index} has no log saved yet.`;
    else if (status !== 200) box.textContent = errorText(body, `The API answered ${status}.`);
    else box.textContent = (body.truncated ? "[… earlier lines cut …]\n" : "") + body.log;
  }

  // A player per video of the job's encode steps, made once (its presigned URL stays valid for the page).
  function showVideos(videos) {
    const box = document.getElementById("videos");
    if (!videos.length || box.dataset.loaded) return;
    box.dataset.loaded = "1";
    box.replaceChildren(...videos.map((video) => {
      const player = el("video", { controls: true, preload: "metadata", src: video.url, "aria-label": `Video of the job (${video.format})` });
      const link = el("a", { href: video.url, text: "Download" });
      return el("figure", {}, player, el("figcaption", {}, `${videoCaption(video)} · `, link));
    }));
    document.getElementById("videos-box").hidden = false;
  }

  function setImage(elementId, url) {
    const img = document.getElementById(elementId);
    if (!url || img.dataset.loaded) return;
    img.dataset.loaded = "1";
    img.src = url;
    img.hidden = false;
  }

  function measure(img) {
    if (measured || !img.naturalWidth) return;
    measured = { width: img.naturalWidth, height: img.naturalHeight };
    if (job) renderFacts();
  }

  async function loadFrames() {
    let offset = 0;
    while (offset !== null) {
      const { status, body } = await getJson(`${api}/frames?offset=${offset}&limit=1000`);
      if (status !== 200) return;
      for (const frame of body.frames) {
        if (shown.has(frame.frame)) continue;
        // OpenEXR frames cannot be shown by a browser: a tile to download instead of a thumbnail.
        const picture = job && job.scene.output_format === "exr"
          ? el("span", { className: "file-tile", text: "EXR" })
          : el("img", { src: frame.url, alt: `Frame ${frame.frame}`, loading: "lazy", "data-frame": frame.frame });
        if (picture.tagName === "IMG") picture.addEventListener("load", () => measure(picture), { once: true });
        const link = el("a", { href: frame.url, title: `Frame ${frame.frame}` }, picture, el("span", { text: `#${frame.frame}` }));
        shown.set(frame.frame, link);
      }
      offset = body.frames_next_offset;
    }
    const ordered = [...shown.keys()].sort((a, b) => a - b).map((n) => shown.get(n));
    if (ordered.length !== frames.children.length) frames.replaceChildren(...ordered);
    document.getElementById("frames-note").textContent = framesNote(job, shown.size);
  }

  function chunkRow(task) {
    let log = el("span", { className: "muted", title: "No render log: the simulated renderer writes none, and a chunk has one only once it started.", text: "–" });
    if (chunkHasLog(job, task)) {
      log = el("button", { type: "button", className: "secondary", title: `The render log of chunk ${task.index}`, text: "Show" });
      log.addEventListener("click", () => showLog(task.index));
    }
    return el("tr", {},
      el("td", { text: task.index }),
      el("td", { text: task.frames }),
      el("td", {}, badge(task.status)),
      el("td", {}, el("code", { text: task.worker || "–" })),
      el("td", { text: task.attempt }),
      el("td", { title: task.started_at || "", text: time(task.started_at) }),
      el("td", { title: task.finished_at || "", text: time(task.finished_at) }),
      el("td", { text: task.seconds_per_frame === null ? "" : task.seconds_per_frame.toFixed(2) }),
      el("td", { className: "error", text: task.error ? `${task.error} (${task.error_code})` : "" }),
      el("td", {}, log));
  }

  // The chunks as the API has them now; true when every one of them is finished (none QUEUED or PROCESSING).
  async function loadChunks() {
    const tasks = [];
    let cursor = null;
    do {
      const query = new URLSearchParams({ limit: "1000" });
      if (cursor) query.set("cursor", cursor);
      const { status, body } = await getJson(`${api}/tasks?${query}`);
      if (status !== 200) return false;
      tasks.push(...body.tasks);
      cursor = body.next_cursor;
    } while (cursor);
    document.querySelector("#chunks tbody").replaceChildren(...tasks.map(chunkRow));
    return !tasks.some((t) => UNFINISHED_CHUNK.has(t.status));
  }

  async function showLog(index) {
    const box = document.getElementById("log");
    box.hidden = false;
    box.textContent = `Loading the log of chunk ${index}…`;
    let status, body;
    try {
      ({ status, body } = await send("GET", `${api}/tasks/${index}/log`));
    } catch (err) {
      box.textContent = "Cannot reach the API.";
      return;
    }
    if (status === 404) box.textContent = `Chunk ${index} has no render log saved yet.`;
    else if (status !== 200) box.textContent = errorText(body, `The API answered ${status}.`);
    else box.textContent = (body.truncated ? "[… earlier lines cut …]\n" : "") + body.log;
  }

  // One poll: the job, its frames and its chunks while it runs; once it is final, the frames and chunks one
  // last time, then the chunks alone until they are all finished. Returns how long until the next, or null.
  async function poll() {
    if (job && FINAL.has(job.status) && settlePolls > 0) {
      settlePolls -= 1;
      const settled = await loadChunks();
      return settled || settlePolls === 0 ? null : SETTLE_MS;
    }
    const { status, body } = await getJson(api);
    if (status !== 200) {
      showMessage(errorText(body, `The API answered ${status}.`), true);
      return 5000;
    }
    renderJob(body);
    const [, settled] = await Promise.all([loadFrames(), loadChunks()]);
    if (!FINAL.has(job.status)) return POLL_MS;
    settlePolls = SETTLE_POLLS;
    return settled ? null : SETTLE_MS;
  }

  // Runs a poll now (or right after the one in flight) and schedules the next: one chain of polls at a time.
  async function refresh() {
    clearTimeout(timer);
    timer = null;
    if (inFlight) { again = true; return; }
    inFlight = true;
    let next;
    try {
      next = await poll();
    } catch (err) {
      showMessage("Cannot reach the API; retrying.", true);
      next = 5000;
    }
    inFlight = false;
    if (again) { again = false; refresh(); }
    else if (next !== null) timer = setTimeout(refresh, next);
  }

  async function act(action) {
    if (action === "cancel" && !confirm(`Cancel “${job ? job.scene.name : id}”? Frames rendered so far are kept; Retry renders the rest.`)) return;
    const button = document.getElementById(action);
    button.disabled = true;
    const { status, body } = await send("POST", `${api}/${action}`);
    button.disabled = false;
    if (status === 200) {
      actionNote = action === "cancel"
        ? { text: "Cancel requested: the workers stop at their next frame.", while: new Set(["PROCESSING", "CANCELLING"]) }
        : { text: "Retry queued.", while: new Set(["QUEUED"]) };
      settlePolls = 0;
      renderJob(body);
    } else {
      actionNote = { text: errorText(body, `The API answered ${status}.`), error: true, while: null }; // until the next action
      showMessage(actionNote.text, true);
    }
    refresh();
  }
  document.getElementById("cancel").addEventListener("click", () => act("cancel"));
  document.getElementById("retry").addEventListener("click", () => act("retry"));
  refresh();
}

// --- New-job page -----------------------------------------------------------------------------------
// Fields a Blender job may leave to the scene file: blank ones are not sent, and the API renders with the
// file's own (jobs/api/serializers.py: the frame range when both ends are blank, the format when "the file's").
const FROM_FILE = ["width", "height", "samples", "frame_start", "frame_end"];
const READ_WAIT_MS = 1000; // between looks at a scene file the farm's Blender is reading

// The scene file's own values, from the body of GET /api/assets/<sha256> once the farm has read the file.
function sceneFileValues(asset) {
  const s = (asset && asset.settings) || {};
  return { width: s.width, height: s.height, samples: s.samples, frame_start: s.frame_start, frame_end: s.frame_end };
}

// What the farm will change or refuse in a scene file, for a person (from the same body).
function sceneFileNotes(asset) {
  const inspection = (asset && asset.inspection) || {};
  const notes = [...(inspection.refused || []).map((r) => `Refused: ${r}`)];
  for (const m of inspection.missing_files || []) notes.push(`Not packed: ${m.kind} ${m.name} (${m.path}); ${m.fix}.`);
  for (const s of inspection.substitutions || []) notes.push(`Note: ${s}.`);
  if (inspection.state === "failed") notes.push(`Blender could not read the file: ${inspection.error}`);
  return notes;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function newJobPage() {
  const form = document.getElementById("new-job");
  const renderer = form.elements.renderer;
  const fileLabel = document.getElementById("scene-file-label");
  const fileHint = document.getElementById("from-file-hint");
  // What was in the three fields for each renderer, restored when switching back to it.
  const kept = { simulated: {}, blender: Object.fromEntries(FROM_FILE.map((name) => [name, ""])) };
  let shownFor = "simulated";
  const format = form.elements.output_format;
  const fileFormat = el("option", { text: "the file's" });
  fileFormat.value = "";
  let uploaded = null; // {file, sha256: a promise}: the scene file being (or) stored, uploaded once per file
  function ensureUploaded(file) {
    if (!uploaded || uploaded.file !== file) uploaded = { file, sha256: uploadScene(file) };
    return uploaded.sha256;
  }

  function showFileValues(values) {
    for (const name of FROM_FILE) {
      const known = values[name];
      form.elements[name].placeholder = known === undefined || known === null ? "from the file" : `${known} (from the file)`;
    }
  }

  function switchRenderer() {
    const blender = renderer.value === "blender";
    fileLabel.hidden = !blender;
    fileHint.hidden = !blender;
    if (renderer.value === shownFor) return;
    for (const name of FROM_FILE) {
      kept[shownFor][name] = form.elements[name].value;
      form.elements[name].value = kept[renderer.value][name] ?? form.elements[name].defaultValue;
      if (!blender) form.elements[name].placeholder = "";
    }
    if (blender) {
      showFileValues(sceneFileValues(null));
      format.prepend(fileFormat);
      format.value = "";
    } else {
      fileFormat.remove();
      if (format.value === "exr" || format.value === "") format.value = "png";
    }
    shownFor = renderer.value;
  }
  renderer.addEventListener("change", switchRenderer);
  switchRenderer();

  function uploadProgress(fraction, text) {
    const box = document.getElementById("upload-progress");
    box.hidden = false;
    const percent = Math.round(100 * fraction);
    box.setAttribute("aria-valuenow", String(percent));
    box.querySelector(".bar").style.width = `${percent}%`;
    const label = document.getElementById("upload-text");
    label.hidden = false;
    label.textContent = text;
  }

  async function sha256Hex(file) {
    const digest = await crypto.subtle.digest("SHA-256", await file.arrayBuffer());
    return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
  }

  function put(upload, file) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open(upload.method || "PUT", upload.url);
      for (const [name, value] of Object.entries(upload.headers || {})) {
        // The browser sets Content-Length itself (from the file) and refuses a script that tries to.
        if (name.toLowerCase() !== "content-length") xhr.setRequestHeader(name, value);
      }
      xhr.upload.onprogress = (e) => { if (e.lengthComputable) uploadProgress(e.loaded / e.total, `Uploading ${file.name}: ${Math.round(100 * e.loaded / e.total)}%`); };
      xhr.onload = () => (xhr.status >= 200 && xhr.status < 300 ? resolve() : reject(new Error(`The upload was refused (HTTP ${xhr.status}).`)));
      xhr.onerror = () => reject(new Error("The upload failed (network error)."));
      xhr.send(file);
    });
  }

  async function uploadScene(file) {
    uploadProgress(0, `Checking ${file.name}…`);
    const sha256 = await sha256Hex(file);
    const { status, body } = await send("POST", "/api/assets", { sha256, size: file.size });
    if (status === 404 && !(body && body.error && body.error.code !== "not_found")) {
      throw new Error("This server does not accept scene uploads yet.");
    }
    if (status !== 200 && status !== 201) throw new Error(errorText(body, `The API answered ${status}.`));
    if (body.upload) await put(body.upload, file);
    uploadProgress(1, `${file.name} stored.`);
    return sha256;
  }

  // Upload the chosen file at once, then show what the farm's Blender reads of it as the fields' placeholders.
  async function readSceneFile() {
    const file = form.elements.scene_file.files[0];
    if (!file) return null;
    const sha256 = await ensureUploaded(file);
    uploadProgress(1, `${file.name} stored; reading its settings…`);
    for (;;) {
      const { status, body } = await send("GET", `/api/assets/${sha256}`);
      if (status !== 200) throw new Error(errorText(body, `The API answered ${status}.`));
      if (body.inspection && body.inspection.state !== "pending") {
        showFileValues(sceneFileValues(body));
        const notes = sceneFileNotes(body);
        const s = body.settings;
        const summary = s ? `${file.name}: ${s.engine}, frames ${s.frame_start}–${s.frame_end}, ${s.width}×${s.height}, ${s.samples} samples, ${s.output_format}${s.film_transparent ? " with alpha" : ""}.` : `${file.name} stored.`;
        uploadProgress(1, [summary, ...notes].join(" "));
        return body;
      }
      await sleep(READ_WAIT_MS);
    }
  }
  form.elements.scene_file.addEventListener("change", () => {
    readSceneFile().catch((err) => showMessage(err.message, true));
  });

  function jobBody() {
    const f = form.elements;
    const body = { scene: f.scene.value };
    const list = f.frames.value.trim(); // a frame list stands in for the first and last frame
    if (list) body.frames = list;
    for (const name of ["width", "height", "samples", "frame_start", "frame_end", "chunk_size"]) {
      if (list && (name === "frame_start" || name === "frame_end")) continue;
      if (f[name].value !== "") body[name] = Number(f[name].value);
    }
    if (f.output_format.value !== "") body.output_format = f.output_format.value;
    body.priority = f.priority.value;
    if (f.callback_url.value.trim()) body.callback_url = f.callback_url.value.trim();
    if (f.encode_format.value) body.steps = [{ type: "encode", format: f.encode_format.value, fps: Number(f.encode_fps.value) }];
    if (renderer.value !== "simulated") body.renderer = renderer.value;
    return body;
  }

  let idempotencyKey = crypto.randomUUID ? crypto.randomUUID() : String(Date.now());
  form.addEventListener("input", () => { idempotencyKey = crypto.randomUUID ? crypto.randomUUID() : String(Date.now()); });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const submit = document.getElementById("submit");
    submit.disabled = true;
    showMessage("");
    try {
      const body = jobBody();
      if (renderer.value === "blender") {
        const file = form.elements.scene_file.files[0];
        if (!file) throw new Error("Choose a .blend scene file for the Blender renderer.");
        body.scene_file = await ensureUploaded(file);
      }
      let { status, body: answer } = await send("POST", "/api/jobs", body, { "Idempotency-Key": idempotencyKey });
      while (status === 409 && answer && answer.error && answer.error.code === "scene_file_inspecting") {
        showMessage("The farm is reading the scene file's settings…");
        await sleep(READ_WAIT_MS);
        ({ status, body: answer } = await send("POST", "/api/jobs", body, { "Idempotency-Key": idempotencyKey }));
      }
      if (status !== 201) throw new Error(errorText(answer, `The API answered ${status}.`));
      location.assign(`/jobs/${answer.id}`);
    } catch (err) {
      showMessage(err.message, true);
      submit.disabled = false;
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const page = document.body.dataset.page;
  if (page === "jobs") jobsPage();
  else if (page === "job") jobPage();
  else if (page === "new") newJobPage();
});
