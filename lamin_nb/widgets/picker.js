// The UploadWidget's file picker (anywidget front end, no build step).
//
// With the lamin_nb Jupyter server extension there, each picked file goes to the server in
// chunks (File.slice(), one PUT per chunk, the page's own auth and XSRF cookie): any size,
// progress with rate and time left, Cancel, and resume after a page reload (pick the same file
// again). The kernel then saves the staged files through the core. Without that route (a bare
// kernel, another front end) files travel in one kernel message, as ipywidgets' FileUpload
// does, and files above the message limit are refused with a reason instead of dropped.

function pageConfig() {
  const el = document.getElementById("jupyter-config-data");
  if (!el) return null;
  try {
    return JSON.parse(el.textContent);
  } catch (e) {
    return null;
  }
}

function cookie(name) {
  const found = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
  return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
}

function server() {
  const config = pageConfig();
  if (!config) return null;
  let base = config.baseUrl || "/";
  if (!base.endsWith("/")) base += "/";
  const headers = {};
  const xsrf = cookie("_xsrf");
  if (xsrf) headers["X-XSRFToken"] = xsrf;
  if (config.token) headers["Authorization"] = "token " + config.token;
  return { api: base + "lamin/api/", headers };
}

async function call(srv, method, route, body, signal) {
  const init = { method, headers: { ...srv.headers }, credentials: "same-origin", signal };
  if (body !== undefined) init.body = body;
  const response = await fetch(srv.api + route, init);
  let json = {};
  try {
    json = await response.json();
  } catch (e) {
    json = { error: `${response.status} ${response.statusText}` };
  }
  return { status: response.status, ok: response.ok, json };
}

function human(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function duration(seconds) {
  if (!isFinite(seconds)) return "";
  if (seconds < 60) return `${Math.ceil(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.ceil(seconds % 60)} s`;
  return `${Math.floor(seconds / 3600)} h ${Math.ceil((seconds % 3600) / 60)} min`;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

const STYLE = `
.lamin-picker { display: flex; flex-direction: column; align-items: flex-start; gap: 4px; }
.lamin-picker-file { display: flex; align-items: center; gap: 8px; font-size: var(--jp-ui-font-size1, 13px); }
.lamin-picker-name { max-width: 22em; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.lamin-picker-bar { width: 14em; height: 10px; }
.lamin-picker-state { color: var(--jp-ui-font-color2, #616161); }
.lamin-picker-failed .lamin-picker-state, .lamin-picker-error { color: var(--jp-error-color1, #d32f2f); }
.lamin-picker-cancel, .lamin-picker-cancel-all { width: auto; padding: 0 10px; }
`;

async function render({ model, el }) {
  el.classList.add("lamin-picker");
  const style = element("style");
  style.textContent = STYLE;
  el.append(style);
  const input = element("input");
  input.type = "file";
  input.style.display = "none";
  const button = element("button", "lamin-picker-button jupyter-button widget-button");
  const cancelAll = element("button", "lamin-picker-cancel-all jupyter-button widget-button");
  cancelAll.textContent = "Cancel all";
  const list = element("div", "lamin-picker-files");
  const note = element("div", "lamin-picker-note");
  el.append(input, button, cancelAll, list, note);
  const running = new Map(); // upload id -> {controller, started, startBytes, received}
  let srv = server();

  const staged = () => model.get("staged").map((entry) => ({ ...entry }));
  const setStaged = (entries) => {
    model.set("staged", entries);
    model.save_changes();
  };
  const patch = (id, changes) => {
    setStaged(staged().map((entry) => (entry.id === id ? { ...entry, ...changes } : entry)));
  };
  const setBusy = () => {
    const busy = running.size > 0;
    if (model.get("busy") !== busy) {
      model.set("busy", busy);
      model.save_changes();
    }
  };
  const refuse = (message) => {
    note.textContent = message;
    note.classList.add("lamin-picker-error");
    model.set("error", message);
    model.save_changes();
  };

  function draw() {
    const entries = model.get("staged");
    const count = model.get("value").length + entries.length;
    button.textContent = `${model.get("description")} (${count})`;
    input.multiple = model.get("multiple");
    input.accept = model.get("accept");
    cancelAll.style.display = entries.length > 1 ? "" : "none";
    list.replaceChildren(...entries.map(row));
  }

  function row(entry) {
    const box = element("div", `lamin-picker-file lamin-picker-${entry.state}`);
    box.dataset.id = entry.id;
    const fraction = entry.size ? entry.received / entry.size : 1;
    const bar = element("progress", "lamin-picker-bar");
    bar.max = 1;
    bar.value = fraction;
    const live = running.get(entry.id);
    let text = `${human(entry.received)} of ${human(entry.size)} (${Math.floor(fraction * 100)} %)`;
    if (live && live.rate > 0) {
      const left = (entry.size - entry.received) / live.rate;
      text += ` · ${human(live.rate)}/s · ${duration(left)} left`;
    }
    if (entry.state === "complete") text = `${human(entry.size)} uploaded, ready to save`;
    if (entry.state === "receiving" && !live) text += " · paused: pick the same file to resume";
    if (entry.state === "failed") text = `failed: ${entry.error}`;
    const cancel = element("button", "lamin-picker-cancel jupyter-button widget-button", "Cancel");
    cancel.onclick = () => cancelUpload(entry.id);
    box.append(
      element("span", "lamin-picker-name", entry.name),
      bar,
      element("span", "lamin-picker-state", text),
      cancel,
    );
    return box;
  }

  async function cancelUpload(id) {
    const live = running.get(id);
    if (live) live.controller.abort();
    running.delete(id);
    setStaged(staged().filter((entry) => entry.id !== id));
    setBusy();
    if (srv) {
      const answer = await call(srv, "DELETE", `uploads/${id}`);
      if (!answer.ok && answer.status !== 404) refuse(`cancel failed: ${answer.json.error}`);
    }
  }

  async function upload(file) {
    const resumable = staged().find(
      (e) => e.name === file.name && e.size === file.size && e.state !== "complete",
    );
    let entry = resumable;
    if (entry) {
      const answer = await call(srv, "GET", `uploads/${entry.id}`);
      if (answer.ok && ["receiving", "complete"].includes(answer.json.state)) {
        entry = { ...entry, received: answer.json.received, state: "receiving", error: "" };
        patch(entry.id, entry);
      } else {
        setStaged(staged().filter((e) => e.id !== entry.id)); // gone on the server: start anew
        entry = null;
      }
    }
    if (!entry) {
      const body = JSON.stringify({ name: file.name, size: file.size });
      const answer = await call(srv, "POST", "uploads", body);
      if (!answer.ok) return refuse(`${file.name}: ${answer.json.error}`);
      const u = answer.json;
      entry = { id: u.id, name: u.name, size: u.size, received: u.received, path: u.path };
      entry.state = "receiving";
      entry.chunk_size = u.chunk_size;
      setStaged([...staged(), entry]);
    }
    const live = { controller: new AbortController(), rate: 0, started: performance.now() };
    live.startBytes = entry.received;
    running.set(entry.id, live);
    setBusy();
    try {
      await send(file, entry, live);
      patch(entry.id, { received: file.size, state: "complete" });
    } catch (error) {
      if (live.controller.signal.aborted) return; // cancelled: already gone
      if (error instanceof TypeError) {
        // the network went away (or the page is being left): the server keeps what arrived
        patch(entry.id, { state: "receiving", error: "interrupted" });
      } else {
        patch(entry.id, { state: "failed", error: String(error.message || error) });
        refuse(`${file.name}: ${error.message || error}`);
      }
    } finally {
      running.delete(entry.id);
      setBusy();
      draw();
    }
  }

  // several chunks in flight: the first from the server's offset, every later one at a
  // multiple of the chunk size (the server writes each at its offset; `received` is the
  // prefix without a gap)
  const IN_FLIGHT = 4;

  async function send(file, entry, live) {
    const chunk = entry.chunk_size || 64 * 1024 * 1024;
    let from = entry.received;
    while (from < file.size) {
      let next = from;
      let restart = null;
      let stop = false;
      const lane = async () => {
        let busyTries = 0;
        while (!stop && restart === null && next < file.size) {
          const offset = next;
          const end = Math.min((Math.floor(offset / chunk) + 1) * chunk, file.size);
          next = end;
          for (;;) {
            const route = `uploads/${entry.id}?offset=${offset}`;
            const answer = await call(srv, "PUT", route, file.slice(offset, end), live.controller.signal);
            if (answer.status === 409 && typeof answer.json.received === "number") {
              restart = Math.min(restart ?? answer.json.received, answer.json.received);
              return; // the server's truth (a chunk that partly arrived): start again there
            }
            if (answer.status === 409 && answer.json.retry && busyTries < 100) {
              busyTries += 1; // an aborted request (a reload) still holds it: wait for it
              await new Promise((resolve) => setTimeout(resolve, 300));
              continue;
            }
            busyTries = 0;
            if (!answer.ok) throw new Error(answer.json.error || `HTTP ${answer.status}`);
            entry.received = Math.max(entry.received, answer.json.received);
            const seconds = (performance.now() - live.started) / 1000;
            live.rate = seconds > 0 ? (entry.received - live.startBytes) / seconds : 0;
            patch(entry.id, { received: entry.received });
            break;
          }
        }
      };
      let failure = null;
      await Promise.all(
        Array.from({ length: IN_FLIGHT }, () =>
          lane().catch((error) => {
            stop = true; // the other lanes end after their current chunk
            failure = failure || error;
          }),
        ),
      );
      if (failure) throw failure;
      if (restart === null) return;
      from = restart;
      entry.received = restart;
      patch(entry.id, { received: restart });
    }
  }

  function viaKernel(files) {
    const limit = model.get("max_message_bytes");
    const fits = files.filter((f) => f.size <= limit);
    const tooBig = files.filter((f) => f.size > limit);
    if (tooBig.length) {
      refuse(
        `${tooBig.map((f) => `${f.name} (${human(f.size)})`).join(", ")} not picked: without ` +
          `the lamin_nb Jupyter server extension files travel in one kernel message, at most ` +
          `${human(limit)}. Open the notebook in JupyterLab or Notebook where lamin_nb is ` +
          `installed, or save the file from its path with ln.Artifact(path).save().`,
      );
    }
    return Promise.all(
      fits.map(async (f) => ({
        name: f.name,
        type: f.type,
        size: f.size,
        last_modified: f.lastModified,
        content: new DataView(await f.arrayBuffer()),
      })),
    ).then((entries) => {
      if (!entries.length) return;
      model.set("value", [...model.get("value"), ...entries]);
      model.save_changes();
    });
  }

  async function picked() {
    const files = Array.from(input.files || []);
    input.value = "";
    note.textContent = "";
    note.classList.remove("lamin-picker-error");
    if (model.get("error")) {
      model.set("error", "");
      model.save_changes();
    }
    if (model.get("mode") === "chunked") {
      await Promise.all(files.map((f) => upload(f)));
    } else {
      await viaKernel(files);
    }
  }

  async function probe() {
    if (srv) {
      try {
        const answer = await call(srv, "GET", "uploads");
        if (answer.ok) return "chunked";
      } catch (e) {
        // no such route here: the kernel path
      }
    }
    srv = null;
    return "kernel";
  }

  button.onclick = () => input.click();
  cancelAll.onclick = () => staged().forEach((entry) => cancelUpload(entry.id));
  input.addEventListener("change", picked);
  model.on("change:staged", draw);
  model.on("change:value", draw);
  model.on("change:description", draw);
  draw();
  const mode = await probe();
  if (model.get("mode") !== mode) {
    model.set("mode", mode);
    model.save_changes();
  }
  el.dataset.mode = mode;
  return () => running.forEach((live) => live.controller.abort());
}

export default { render };
