// pixql search page: talks to /ui/tables, /ui/search and /ui/image. No framework, no build.
// Data is only ever put in the page with textContent / DOM properties (never innerHTML).
"use strict";

(function () {
  const KEY_STORAGE = "pixql.apiKey";
  const $ = (id) => document.getElementById(id);
  const els = {
    keyForm: $("key-form"), key: $("key"), keyForget: $("key-forget"), keyButton: $("key-button"),
    form: $("search-form"), table: $("table"), column: $("column"), topK: $("top-k"),
    info: $("column-info"), modeImage: $("mode-image"), modeText: $("mode-text"),
    imageInput: $("image-input"), textInput: $("text-input"), file: $("file"), text: $("text"),
    drop: $("drop"), dropText: $("drop-text"), preview: $("preview"), search: $("search"),
    status: $("status"), error: $("error"), results: $("results"),
  };
  const state = { tables: [], limits: null, objectUrls: [], previewUrl: null };

  // ------------------------------------------------------------------ API key + requests
  function apiKey() {
    try { return sessionStorage.getItem(KEY_STORAGE) || ""; } catch (e) { return ""; }
  }
  function setApiKey(value) {
    try {
      if (value) sessionStorage.setItem(KEY_STORAGE, value);
      else sessionStorage.removeItem(KEY_STORAGE);
    } catch (e) { /* storage disabled: the key lives for this page only */ }
    memoryKey = value;
  }
  let memoryKey = apiKey();

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  function headers() {
    return memoryKey ? { Authorization: "Bearer " + memoryKey } : {};
  }

  async function request(url, options) {
    const opts = Object.assign({}, options || {});
    opts.headers = Object.assign({}, opts.headers || {}, headers());
    let response;
    try {
      response = await fetch(url, opts);
    } catch (e) {
      throw new ApiError(0, "The server cannot be reached (" + e.message + ").");
    }
    if (response.ok) return response;
    let message = response.status + " " + response.statusText;
    try {
      const body = await response.json();
      if (body && typeof body.message === "string") message = body.message;
    } catch (e) { /* not JSON: keep the status line */ }
    throw new ApiError(response.status, message);
  }

  async function getJson(url, options) {
    return (await request(url, options)).json();
  }

  // ------------------------------------------------------------------ messages
  function showError(message) {
    els.error.textContent = message;
    els.error.hidden = !message;
  }
  function setStatus(text) { els.status.textContent = text || ""; }

  function handle(error) {
    if (error instanceof ApiError && error.status === 401) {
      showKeyForm(memoryKey ? "That API key was refused." : "");
      showError(memoryKey ? "The API key was refused: " + error.message : error.message);
      return;
    }
    showError(error.message || String(error));
  }

  function showKeyForm(note) {
    els.keyForm.hidden = false;
    els.keyButton.hidden = false;
    els.key.value = "";
    els.key.placeholder = note || "";
    els.key.focus();
  }

  // ------------------------------------------------------------------ tables and columns
  function option(value, label, disabled) {
    const o = document.createElement("option");
    o.value = value;
    o.textContent = label;
    o.disabled = !!disabled;
    return o;
  }

  function currentTable() {
    return state.tables.find((t) => t.name === els.table.value) || null;
  }
  function currentColumn() {
    const t = currentTable();
    return t ? t.columns.find((c) => c.name === els.column.value) || null : null;
  }

  async function loadTables() {
    setStatus("Loading tables…");
    try {
      const data = await getJson("/ui/tables");
      state.tables = data.tables;
      state.limits = data.limits;
      els.keyForm.hidden = true;
      showError("");
      fillTables();
      if (!state.tables.length) {
        showError("No table has an embedding column yet: run CONVERT USING <model> first.");
      }
    } catch (e) {
      handle(e);
    } finally {
      setStatus("");
    }
  }

  function fillTables() {
    const previous = els.table.value;
    els.table.replaceChildren(...state.tables.map((t) => option(t.name, t.name)));
    if (state.tables.some((t) => t.name === previous)) els.table.value = previous;
    if (state.limits) els.topK.max = String(state.limits.max_top_k);
    fillColumns();
  }

  function fillColumns() {
    const t = currentTable();
    const columns = t ? t.columns : [];
    els.column.replaceChildren(...columns.map((c) => option(
      c.name, c.name + " — " + c.model + (c.problem ? " (out of date)" : ""), !!c.problem)));
    const usable = columns.find((c) => !c.problem);
    if (usable) els.column.value = usable.name;
    updateColumn();
  }

  function updateColumn() {
    const c = currentColumn();
    const by = c ? c.search_by : [];
    els.modeImage.disabled = !by.includes("image");
    els.modeText.disabled = !by.includes("text");
    els.modeImage.parentElement.classList.toggle("disabled", els.modeImage.disabled);
    els.modeText.parentElement.classList.toggle("disabled", els.modeText.disabled);
    if (els.modeText.checked && els.modeText.disabled) els.modeImage.checked = true;
    if (els.modeImage.checked && els.modeImage.disabled && !els.modeText.disabled) {
      els.modeText.checked = true;
    }
    if (!c) els.info.textContent = "";
    else if (c.problem) els.info.textContent = c.problem;
    else {
      els.info.textContent = "Model " + c.model + " (" + c.kind + ", version " +
        c.model_version + ", " + c.dim + " dimensions) embedded " + c.modality + "s from " +
        c.source_column + "; it can search by " + (by.join(" or ") || "nothing") + ".";
    }
    els.search.disabled = !c || !!c.problem;
    updateMode();
  }

  function mode() { return els.modeText.checked ? "text" : "image"; }

  function updateMode() {
    const text = mode() === "text";
    els.textInput.hidden = !text;
    els.imageInput.hidden = text;
  }

  // ------------------------------------------------------------------ the query image
  function setFile(file) {
    if (state.previewUrl) URL.revokeObjectURL(state.previewUrl);
    state.previewUrl = null;
    els.preview.hidden = true;
    if (!file) { els.dropText.textContent = "or drop one here"; return; }
    state.previewUrl = URL.createObjectURL(file);
    els.preview.src = state.previewUrl;
    els.preview.alt = "query: " + file.name;
    els.preview.hidden = false;
    els.dropText.textContent = file.name + " (" + Math.ceil(file.size / 1024) + " KiB)";
  }

  function onDrop(event) {
    event.preventDefault();
    els.drop.classList.remove("over");
    const files = event.dataTransfer && event.dataTransfer.files;
    if (!files || !files.length) return;
    const transfer = new DataTransfer();
    transfer.items.add(files[0]);
    els.file.files = transfer.files;
    setFile(files[0]);
  }

  // ------------------------------------------------------------------ searching
  function queryForm() {
    const form = new FormData();
    form.append("table", els.table.value);
    form.append("emb_col", els.column.value);
    form.append("top_k", els.topK.value || "12");
    const limits = state.limits || {};
    if (mode() === "text") {
      const text = els.text.value.trim();
      if (!text) throw new Error("Type a text to search for.");
      form.append("text", text);
      return form;
    }
    const file = els.file.files && els.file.files[0];
    if (!file) throw new Error("Choose an image to search with.");
    if (limits.max_upload_bytes && file.size > limits.max_upload_bytes) {
      throw new Error("The image is " + file.size + " bytes; the server accepts at most " +
        limits.max_upload_bytes + " bytes.");
    }
    form.append("image", file, file.name);
    return form;
  }

  async function onSearch(event) {
    event.preventDefault();
    showError("");
    let form;
    try { form = queryForm(); } catch (e) { showError(e.message); return; }
    els.search.disabled = true;
    els.results.setAttribute("aria-busy", "true");
    setStatus("Searching…");
    try {
      const data = await getJson("/ui/search", { method: "POST", body: form });
      render(data);
      setStatus(data.results.length + " results in " + (data.time * 1000).toFixed(0) + " ms");
    } catch (e) {
      setStatus("");
      clearResults();
      handle(e);
    } finally {
      els.search.disabled = !currentColumn();
      els.results.removeAttribute("aria-busy");
    }
  }

  function clearResults() {
    state.objectUrls.forEach((u) => URL.revokeObjectURL(u));
    state.objectUrls = [];
    els.results.replaceChildren();
  }

  function span(cls, text) {
    const s = document.createElement("span");
    s.className = cls;
    s.textContent = text;
    return s;
  }

  function tile(result, columns) {
    const fig = document.createElement("figure");
    fig.className = "tile" + (result.rank === 1 ? " best" : "");
    fig.dataset.rank = String(result.rank);
    fig.dataset.score = String(result.score);
    fig.dataset.path = result.path || "";
    const thumb = document.createElement("div");
    thumb.className = "thumb";
    thumb.appendChild(span("rank", "#" + result.rank));
    if (result.image_url) {
      const img = document.createElement("img");
      img.alt = result.path || "";
      img.loading = "lazy";
      img.decoding = "async";
      thumb.appendChild(img);
      loadImage(img, result.image_url);
    } else {
      thumb.appendChild(span("none", result.path || "no image"));
    }
    const cap = document.createElement("figcaption");
    cap.appendChild(span("score", result.score.toFixed(3)));
    const bar = span("bar-score", "");
    const fill = document.createElement("span");
    fill.style.width = Math.max(0, Math.min(1, result.score)) * 100 + "%";
    bar.appendChild(fill);
    cap.appendChild(bar);
    if (result.path) cap.appendChild(span("path", result.path));
    columns.forEach((name) => {
      const v = result.values[name];
      if (v !== null && v !== undefined && v !== result.path) {
        cap.appendChild(span("meta", name + ": " + v));
      }
    });
    fig.appendChild(thumb);
    fig.appendChild(cap);
    return fig;
  }

  // Thumbnails: a plain <img src> without a key; with a key they are fetched with the
  // Authorization header and shown from a blob: URL, so the key never appears in a URL.
  async function loadImage(img, url) {
    if (!memoryKey) { img.src = url; return; }
    try {
      const blob = await (await request(url)).blob();
      const objectUrl = URL.createObjectURL(blob);
      state.objectUrls.push(objectUrl);
      img.src = objectUrl;
    } catch (e) {
      img.alt = "cannot load: " + e.message;
    }
  }

  function render(data) {
    clearResults();
    if (!data.results.length) {
      els.results.appendChild(span("hint", "No rows with an embedding in " + data.table + "."));
      return;
    }
    data.results.forEach((r) => els.results.appendChild(tile(r, data.columns)));
  }

  // ------------------------------------------------------------------ wiring
  els.table.addEventListener("change", fillColumns);
  els.column.addEventListener("change", updateColumn);
  els.modeImage.addEventListener("change", updateMode);
  els.modeText.addEventListener("change", updateMode);
  els.file.addEventListener("change", () => setFile(els.file.files && els.file.files[0]));
  els.drop.addEventListener("dragover", (e) => { e.preventDefault(); els.drop.classList.add("over"); });
  els.drop.addEventListener("dragleave", () => els.drop.classList.remove("over"));
  els.drop.addEventListener("drop", onDrop);
  els.form.addEventListener("submit", onSearch);
  els.keyForm.addEventListener("submit", (e) => {
    e.preventDefault();
    setApiKey(els.key.value.trim());
    loadTables();
  });
  els.keyForget.addEventListener("click", () => {
    setApiKey("");
    clearResults();
    showKeyForm("");
  });
  els.keyButton.addEventListener("click", () => showKeyForm(""));
  els.preview.addEventListener("error", () => { els.preview.hidden = true; });
  if (memoryKey) els.keyButton.hidden = false;
  updateColumn();
  loadTables();
})();
