// The progress panel's Cancel button (anywidget front end, no build step).
//
// While a cell runs, the kernel's shell channel is busy: a widget message from this button
// would be read only after the save has ended. So the click asks the Jupyter server to
// interrupt this kernel, exactly as the toolbar's stop button does (POST
// api/kernels/<id>/interrupt with the page's auth and XSRF cookie). The server then uses the
// kernel's own interrupt mode (a SIGINT, or an interrupt_request on the control channel, which
// is not blocked by the running cell), also for kernels it runs remotely through a gateway;
// the save receives a KeyboardInterrupt and undoes what is in flight (its tested undo). The
// widget message "requested" is sent too: the kernel reads it once the cell has ended and then
// discards the large uploads that the interrupt kept for a resume (a Cancel keeps nothing).
//
// Why not a lamin route that signals the kernel: the server knows a kernel's pid only when it
// runs it locally, so that breaks for kernels behind a gateway and for kernels whose interrupt
// mode is "message", and it would copy what api/kernels/<id>/interrupt already does right.
// One window remains, as with the stop button: a click in the few milliseconds between the
// save's end and the "running: false" update reaching the page interrupts the rest of the
// cell; an idle kernel ignores an interrupt.
//
// The button shows only while the save runs and only where a Jupyter server manages this
// kernel (its id, which the kernel read from its connection file, is known to the server);
// elsewhere (a bare kernel, VS Code, Voila without the kernels API) it stays hidden rather
// than pretend, and ``mode`` tells the kernel so; the front end's own interrupt (or Ctrl-C)
// stops the save there in the same way, only keeping large uploads for a resume.

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

function kernelsApi(kernelId) {
  const config = pageConfig();
  if (!config || !kernelId) return null;
  let base = config.baseUrl || "/";
  if (!base.endsWith("/")) base += "/";
  const headers = {};
  const xsrf = cookie("_xsrf");
  if (xsrf) headers["X-XSRFToken"] = xsrf;
  if (config.token) headers["Authorization"] = "token " + config.token;
  return { url: base + "api/kernels/" + encodeURIComponent(kernelId), headers };
}

async function probe(api) {
  if (!api) return "unavailable";
  try {
    const answer = await fetch(api.url, { headers: api.headers, credentials: "same-origin" });
    return answer.ok ? "interrupt" : "unavailable";
  } catch (e) {
    return "unavailable";
  }
}

async function render({ model, el }) {
  el.classList.add("lamin-save-cancel");
  const button = document.createElement("button");
  button.className = "lamin-save-cancel-button jupyter-button widget-button mod-danger";
  button.textContent = "Cancel";
  button.title = "Stop this save and undo it: nothing of it is kept";
  const note = document.createElement("span");
  note.className = "lamin-save-cancel-note";
  el.append(button, note);
  let api = kernelsApi(model.get("kernel_id"));
  let mode = "probing";
  let sent = false;

  function draw() {
    const running = model.get("running");
    button.style.display = mode === "interrupt" && running && !sent ? "" : "none";
    if (!running && sent && !note.classList.contains("lamin-save-cancel-error")) {
      note.textContent = "";
    }
    el.dataset.mode = mode;
  }

  button.onclick = async () => {
    if (!model.get("running") || sent) return; // the save ended meanwhile: nothing to stop
    sent = true;
    draw();
    note.textContent = "cancelling…";
    model.set("requested", true);
    model.save_changes();
    try {
      const answer = await fetch(api.url + "/interrupt", {
        method: "POST",
        headers: api.headers,
        credentials: "same-origin",
      });
      if (!answer.ok) throw new Error(`HTTP ${answer.status} ${answer.statusText}`);
    } catch (error) {
      note.classList.add("lamin-save-cancel-error");
      note.textContent = `cancel failed (${error.message || error}): interrupt the kernel`;
    }
  };
  model.on("change:running", () => {
    if (model.get("running")) {
      sent = false; // a panel used again: its new save can be cancelled too
      note.textContent = "";
      note.classList.remove("lamin-save-cancel-error");
    }
    draw();
  });
  draw();
  mode = await probe(api);
  if (mode !== "interrupt") api = null;
  if (model.get("mode") !== mode) {
    model.set("mode", mode);
    model.save_changes();
  }
  draw();
}

export default { render };
