// assetgen batch console: submit a batch, watch its images arrive, work with
// the batches made before. Plain JavaScript, no dependencies, no build step.
// All text from the API is written with textContent, never as HTML.
'use strict';

(function () {
  const cfg = window.assetgenConfig || {};
  const apiBase = String(cfg.apiBase || '').replace(/\/+$/, '');
  const MAX_ROWS = 10;
  const TOKEN_KEY = 'assetgen.token';
  // The form as last edited, and the requests submitted from this browser
  // (what Run again refills the form with), in local storage.
  const DRAFT_KEY = 'assetgen.draft';
  const REQUESTS_KEY = 'assetgen.requests';
  const MAX_REMEMBERED = 50;
  const UPLOAD_TYPES = ['image/png', 'image/jpeg', 'image/webp'];
  const FINAL = new Set(['done', 'failed', 'cancelled']);
  // What to tell the user about a code (docs/errors.md).
  const HINTS = {
    MODEL_SAFETY_BLOCKED: 'The model refused the prompt or its output. Rephrase the prompt.',
    MODEL_FAILED: 'The model failed or answered without an image. Retry failed images if it persists.',
    MODEL_RATE_LIMIT: 'The model is rate limited; the row retries by itself.',
    REF_FETCH_FAILED: 'A reference image could not be fetched.',
    REF_TOO_LARGE: 'A reference image is too large.',
    REF_NOT_IMAGE: 'A reference is not a PNG, JPEG, WebP or GIF.',
    UNAUTHENTICATED: 'Sign in again: paste a fresh bearer token.',
    BUDGET_EXCEEDED: 'Shrink the batch or wait for the next UTC day.',
    RATE_LIMITED: 'Too many requests; wait a moment.',
    FEATURE_DISABLED: 'This feature is switched off for you or on this deployment.',
    NOTHING_TO_RETRY: 'Every image of the batch is made: there is nothing to retry.',
    BATCH_NOT_FINISHED: 'The batch is still running: retry once it has finished.',
  };

  const $ = (id) => document.getElementById(id);
  const el = {
    form: $('batch-form'), problem: $('problem'), model: $('model'), modelHint: $('model-hint'),
    imageSize: $('image-size'), imageSizeHint: $('image-size-hint'), outputFormat: $('output-format'),
    dry: $('run-dry'), live: $('run-live'), liveHint: $('live-hint'),
    confirmField: $('confirm-field'), confirm: $('confirm'), globalRefs: $('global-refs'), refsHint: $('refs-hint'),
    token: $('token'), tokenClear: $('token-clear'), rows: $('rows'), rowCount: $('row-count'), addRow: $('add-row'),
    rowsError: $('rows-error'), clearForm: $('clear-form'), csv: $('csv'), csvText: $('csv-text'), csvAdd: $('csv-add'),
    estimate: $('estimate'), budget: $('budget'), budgetWarning: $('budget-warning'),
    submit: $('submit'), submitHint: $('submit-hint'), apiNote: $('api-note'), newBatchTitle: $('new-batch-title'),
    announcer: $('announcer'),
    batch: $('batch'), batchTitle: $('batch-title'), batchId: $('batch-id'), cancel: $('cancel'),
    downloadAll: $('download-all'), runAgain: $('run-again'), retry: $('retry'), cancelResult: $('cancel-result'),
    totals: $('totals'), streamState: $('stream-state'), stall: $('stall'), grid: $('grid'), summary: $('summary'),
    summaryTitle: $('summary-title'), summaryText: $('summary-text'), links: $('links'), rowTemplate: $('row-template'),
    history: $('history'), historyTitle: $('history-title'), listRefresh: $('list-refresh'), listState: $('list-state'),
    batchList: $('batch-list'), listMore: $('list-more'),
    viewer: $('viewer'), viewerTitle: $('viewer-title'), viewerImg: $('viewer-img'), viewerPrompt: $('viewer-prompt'),
    viewerDownload: $('viewer-download'), viewerCopy: $('viewer-copy'), viewerLink: $('viewer-link'), viewerStatus: $('viewer-status'),
    cancelDialog: $('cancel-dialog'), cancelDialogText: $('cancel-dialog-text'), cancelKeep: $('cancel-keep'), cancelConfirm: $('cancel-confirm'),
    retryDialog: $('retry-dialog'), retryDialogText: $('retry-dialog-text'), retryConfirm: $('retry-confirm'), retryGo: $('retry-go'),
  };

  const state = {
    models: null, budget: null, rowSeq: 0, submitting: false, uploading: 0, ready: false,
    // restoring is set while the form is filled from a draft or a batch, so
    // the half-filled form is not saved as the draft.
    restoring: false,
    // A batch whose stream is open but whose rows have not changed for this
    // long says so.
    stallMs: 60000,
    list: { limit: 10, cursor: '', loading: false, seq: 0 },
    announced: [], lastCopied: '',
  };
  // The batch being watched: see startBatch.
  let current = null;

  // ---- formatting -------------------------------------------------------

  const usd = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: 3 });
  const money = (n) => usd.format(Number(n) || 0);
  const plural = (n, one, many) => n + ' ' + (n === 1 ? one : many);
  const when = new Intl.DateTimeFormat('en-GB', { dateStyle: 'medium', timeStyle: 'short' });
  // setText changes text only when it differs, so live regions announce
  // changes, not keystrokes.
  const setText = (e, s) => { if (e.textContent !== s) e.textContent = s; };
  const cap = (s) => s.charAt(0).toUpperCase() + s.slice(1);
  const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

  function h(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k in e && typeof v !== 'string') e[k] = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  // announce tells screen readers about something that happened away from
  // the focus (an upload finished, a batch ended).
  function announce(text) {
    state.announced.push(text);
    // The same text twice in a row is announced again only if it changes.
    el.announcer.textContent = el.announcer.textContent === text ? text + '\u00a0' : text;
  }

  // slug is a prompt as a file name part, as the archive names images:
  // lowercase ASCII letters and digits joined by dashes, at most 40 bytes.
  function slug(prompt) {
    let out = '';
    let gap = false;
    for (const ch of String(prompt).normalize('NFKD')) {
      let c = ch;
      if (/[A-Z]/.test(c)) c = c.toLowerCase();
      if (/[a-z0-9]/.test(c)) {
        const need = gap ? 2 : 1;
        if (out.length + need > 40) break;
        if (gap) { out += '-'; gap = false; }
        out += c;
      } else if (c === '\'' || c === '\u2019' || /\p{Mn}/u.test(c)) {
        continue;
      } else {
        gap = out.length > 0;
      }
    }
    return out;
  }

  function imageName(row, variant, prompt, type) {
    const ext = { 'image/jpeg': '.jpg', 'image/webp': '.webp', 'image/gif': '.gif' }[type] || '.png';
    const s = slug(prompt);
    return 'r' + row + '-v' + variant + (s ? '-' + s : '') + ext;
  }

  // ---- storage ------------------------------------------------------------

  const stored = {
    get(key) {
      try { return JSON.parse(localStorage.getItem(key) || 'null'); } catch (_) { return null; }
    },
    set(key, v) {
      try { localStorage.setItem(key, JSON.stringify(v)); } catch (_) { /* storage full or disabled */ }
    },
    remove(key) {
      try { localStorage.removeItem(key); } catch (_) { /* storage disabled */ }
    },
  };

  function rememberRequest(id, form) {
    const list = (stored.get(REQUESTS_KEY) || []).filter((e) => e && e.id !== id);
    list.unshift({ id, form });
    stored.set(REQUESTS_KEY, list.slice(0, MAX_REMEMBERED));
  }

  function rememberedRequest(id) {
    const e = (stored.get(REQUESTS_KEY) || []).find((x) => x && x.id === id);
    return e ? e.form : null;
  }

  // ---- the API ----------------------------------------------------------

  class ProblemError extends Error {
    constructor(status, doc) {
      super((doc && (doc.detail || doc.title)) || 'request failed');
      this.status = status;
      this.doc = doc || {};
    }
  }

  function token() { return el.token.value.trim(); }

  function resolve(u) { return new URL(u, apiBase ? apiBase + '/' : document.baseURI).toString(); }

  function authHeaders() {
    const t = token();
    return t ? { Authorization: 'Bearer ' + t } : {};
  }

  async function api(method, path, body, extra) {
    const headers = Object.assign({ Accept: 'application/json, application/problem+json' }, authHeaders(), extra || {});
    const init = { method, headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let resp;
    try {
      resp = await fetch(apiBase + path, init);
    } catch (err) {
      throw new ProblemError(0, { title: 'The API could not be reached', detail: String((err && err.message) || err), code: 'NETWORK' });
    }
    const text = await resp.text();
    let doc = null;
    try { doc = text ? JSON.parse(text) : null; } catch (_) { doc = null; }
    if (!resp.ok) {
      if (!doc || typeof doc !== 'object') doc = { title: resp.statusText || 'Request failed', detail: text.slice(0, 300) };
      if (!doc.status) doc.status = resp.status;
      const e = new ProblemError(resp.status, doc);
      e.retryAfter = Number(resp.headers.get('Retry-After')) || 0;
      throw e;
    }
    return doc;
  }

  // renderProblem fills box with a problem document: title, code, detail,
  // every errors[] entry (linked to its field when the form has it), and the
  // request id to quote.
  function renderProblem(box, err) {
    const doc = err instanceof ProblemError ? err.doc : { title: 'Something went wrong', detail: String((err && err.message) || err) };
    box.replaceChildren();
    const head = h('p', { class: 'problem-title' }, h('strong', { text: doc.title || 'Request failed' }));
    if (doc.code) head.append(' ', h('code', { text: doc.code }));
    if (doc.status) head.append(h('span', { class: 'muted', text: ' (HTTP ' + doc.status + ')' }));
    box.append(head);
    if (doc.detail) box.append(h('p', { text: doc.detail }));
    if (doc.code && HINTS[doc.code]) box.append(h('p', { class: 'muted', text: HINTS[doc.code] }));
    if (Array.isArray(doc.errors) && doc.errors.length) {
      const ul = h('ul', { class: 'field-errors' });
      for (const fe of doc.errors) {
        const target = box === el.problem ? fieldFor(fe.field) : null;
        const name = fieldLabel(fe.field);
        let label = h('span', { class: 'field-name', text: name });
        if (target && target.input && target.input.id) {
          const input = target.input;
          label = h('a', { class: 'field-name', href: '#' + input.id, text: name });
          label.addEventListener('click', (e) => { e.preventDefault(); input.focus(); });
        }
        const li = h('li', {}, label, ' ', h('code', { text: fe.code || '' }));
        if (fe.detail) li.append(' — ' + fe.detail);
        ul.append(li);
      }
      box.append(ul);
    }
    if (doc.requestId) box.append(h('p', { class: 'muted', text: 'Request id: ' + doc.requestId }));
    box.hidden = false;
  }

  // ---- the form ---------------------------------------------------------

  function rowItems() { return Array.from(el.rows.children); }
  function field(li, name) { return li.querySelector('[data-name="' + name + '"]'); }
  function parseRefs(text) { return String(text || '').split(/[\s,]+/).map((s) => s.trim()).filter(Boolean); }
  function isLive() { return el.live.checked; }
  function selectedModel() {
    if (!state.models) return null;
    return state.models.models.find((m) => m.name === el.model.value) || null;
  }

  // fieldLabel names a JSON pointer of the request the way the form does.
  function fieldLabel(ptr) {
    const m = /^\/rows\/(\d+)(?:\/(\w+))?(?:\/(\d+))?/.exec(ptr || '');
    if (m) return 'Row ' + (Number(m[1]) + 1) + (m[2] ? ' · ' + m[2] : '') + (m[3] !== undefined ? ' ' + (Number(m[3]) + 1) : '');
    const r = /^\/refs\/(\d+)$/.exec(ptr || '');
    if (r) return 'Reference image ' + (Number(r[1]) + 1) + ' for every row';
    const names = { '/refs': 'Reference images', '/model': 'Model', '/runMode': 'Run mode', '/confirm': 'Confirmation', '/rows': 'Rows' };
    return names[ptr || ''] || ptr || 'request';
  }

  // fieldFor finds the input a JSON pointer names: {input, ref} where ref is
  // the index of a reference within a refs field.
  function fieldFor(ptr) {
    const m = /^\/rows\/(\d+)\/(\w+)(?:\/(\d+))?$/.exec(ptr || '');
    if (m) {
      const li = rowItems()[Number(m[1])];
      const input = li ? field(li, m[2]) : null;
      return input ? { input, ref: m[2] === 'refs' && m[3] !== undefined ? Number(m[3]) : undefined } : null;
    }
    const r = /^\/refs(?:\/(\d+))?$/.exec(ptr || '');
    if (r) return { input: el.globalRefs, ref: r[1] !== undefined ? Number(r[1]) : undefined };
    if (ptr === '/model') return { input: el.model };
    if (ptr === '/confirm') return { input: el.confirm };
    if (ptr === '/rows' || /^\/rows\/\d+$/.test(ptr || '')) return { input: null, rows: true };
    return null;
  }

  // setFieldError shows message under input, linked to it for screen
  // readers; clearFieldError takes it away once the field is edited.
  function setFieldError(input, message) {
    const id = input.id + '-error';
    let p = $(id);
    if (!p) {
      p = h('p', { class: 'field-error', id });
      input.after(p);
    }
    p.textContent = message;
    input.setAttribute('aria-invalid', 'true');
    const ids = (input.getAttribute('aria-describedby') || '').split(/\s+/).filter(Boolean);
    if (!ids.includes(id)) input.setAttribute('aria-describedby', [id, ...ids].join(' '));
  }

  function clearFieldError(input) {
    const id = input.id + '-error';
    const p = $(id);
    if (p) p.remove();
    input.removeAttribute('aria-invalid');
    const ids = (input.getAttribute('aria-describedby') || '').split(/\s+/).filter((x) => x && x !== id);
    if (ids.length) input.setAttribute('aria-describedby', ids.join(' ')); else input.removeAttribute('aria-describedby');
  }

  function setRowsError(message) {
    el.rowsError.textContent = message;
    el.rowsError.hidden = !message;
  }

  function clearProblem() {
    el.problem.hidden = true;
    el.problem.replaceChildren();
    for (const e of el.form.querySelectorAll('[aria-invalid]')) {
      if (e !== el.csvText) clearFieldError(e);
    }
    setRowsError('');
  }

  // showProblem shows a refusal in the box at the top of the form and each
  // field error next to its field, naming the reference a ref error is about.
  function showProblem(err) {
    renderProblem(el.problem, err);
    const errs = (err instanceof ProblemError && Array.isArray(err.doc.errors)) ? err.doc.errors : [];
    const byInput = new Map();
    const rowsMessages = [];
    for (const fe of errs) {
      const t = fieldFor(fe.field);
      if (!t) continue;
      let msg = fe.detail || fe.code || 'This value is not accepted.';
      if (fe.code && !msg.includes(fe.code)) msg += ' (' + fe.code + ')';
      if (t.rows) { rowsMessages.push(msg); continue; }
      if (t.ref !== undefined) {
        const url = parseRefs(t.input.value)[t.ref];
        msg = 'Reference ' + (t.ref + 1) + (url ? ' ' + url : '') + ': ' + msg;
      }
      if (!byInput.has(t.input)) byInput.set(t.input, []);
      byInput.get(t.input).push(msg);
    }
    for (const [input, msgs] of byInput) setFieldError(input, msgs.join('\n'));
    setRowsError(rowsMessages.join('\n'));
    el.problem.focus();
  }

  function fillAspect(select) {
    const m = selectedModel();
    const keep = select.value || select.dataset.want || '';
    const ratios = (m && m.aspectRatios) || [];
    select.replaceChildren(h('option', { value: '', text: ratios.length ? 'Model default (' + ratios[0] + ')' : 'Model default' }));
    for (const r of ratios) select.append(h('option', { value: r, text: r }));
    if (ratios.includes(keep)) {
      select.value = keep;
      delete select.dataset.want;
    } else {
      select.value = '';
      // Kept until the model list says which ratios exist.
      if (keep && !m) select.dataset.want = keep;
    }
  }

  // addRow appends a row, filled from values ({prompt, variants,
  // aspectRatio, refs}) when given.
  function addRow(values) {
    if (rowItems().length >= MAX_ROWS) return null;
    const li = el.rowTemplate.content.firstElementChild.cloneNode(true);
    const key = state.rowSeq++;
    for (const f of li.querySelectorAll('[data-name]')) {
      f.id = 'row-' + key + '-' + f.dataset.name;
      f.name = f.id;
    }
    for (const l of li.querySelectorAll('label[data-for]')) l.htmlFor = 'row-' + key + '-' + l.dataset.for;
    const refs = field(li, 'refs');
    const file = li.querySelector('input.file');
    file.id = 'row-' + key + '-files';
    file.setAttribute('aria-label', 'Reference image files');
    const status = li.querySelector('.upload-status');
    status.id = 'row-' + key + '-upload-status';
    li.querySelector('.upload').addEventListener('click', () => file.click());
    file.addEventListener('change', () => { uploadFiles(Array.from(file.files), refs, status); file.value = ''; });
    li.querySelector('.drop').dataset.drop = refs.id;
    if (values) {
      field(li, 'prompt').value = values.prompt || '';
      field(li, 'variants').value = String(Math.min(3, Math.max(1, Number(values.variants) || 1)));
      field(li, 'aspectRatio').dataset.want = values.aspectRatio || '';
      field(li, 'seed').value = values.seed === undefined || values.seed === null ? '' : String(values.seed);
      refs.value = Array.isArray(values.refs) ? values.refs.join('\n') : (values.refs || '');
    }
    fillAspect(field(li, 'aspectRatio'));
    showSeed(li);
    li.querySelector('.remove').addEventListener('click', () => removeRow(li));
    el.rows.append(li);
    renumber();
    update();
    return li;
  }

  function removeRow(li) {
    const items = rowItems();
    if (items.length <= 1) return;
    const i = items.indexOf(li);
    li.remove();
    renumber();
    update();
    const rest = rowItems();
    const next = rest[Math.min(i, rest.length - 1)];
    field(next, 'prompt').focus();
  }

  function renumber() {
    const items = rowItems();
    items.forEach((li, i) => {
      li.querySelector('.row-legend').textContent = 'Row ' + (i + 1);
      const rm = li.querySelector('.remove');
      rm.setAttribute('aria-label', 'Remove row ' + (i + 1));
      rm.disabled = items.length <= 1;
    });
    el.rowCount.textContent = '(' + items.length + ' of ' + MAX_ROWS + ')';
    el.addRow.disabled = items.length >= MAX_ROWS;
  }

  function rowIsEmpty(li) {
    return !field(li, 'prompt').value.trim() && !field(li, 'refs').value.trim();
  }

  // formValues is the form as typed: what a draft keeps and Run again
  // restores. The confirmation is never kept.
  function formValues() {
    return {
      model: el.model.value || (state.wantModel || ''),
      runMode: isLive() ? 'live' : 'dry_run',
      refs: el.globalRefs.value,
      rows: rowItems().map((li) => ({
        prompt: field(li, 'prompt').value,
        variants: Number(field(li, 'variants').value) || 1,
        aspectRatio: field(li, 'aspectRatio').value || field(li, 'aspectRatio').dataset.want || '',
        seed: field(li, 'seed').value,
        refs: field(li, 'refs').value,
      })),
      imageSize: el.imageSize.value || el.imageSize.dataset.want || '',
      outputFormat: el.outputFormat.value || el.outputFormat.dataset.want || '',
    };
  }

  // applyForm fills the form from values (a draft, or a batch to run again).
  function applyForm(v) {
    state.restoring = true;
    try {
      if (v.model) {
        state.wantModel = v.model;
        if (state.models && state.models.models.some((m) => m.name === v.model)) el.model.value = v.model;
      }
      const live = v.runMode === 'live' && !el.live.disabled;
      el.live.checked = live;
      el.dry.checked = !live;
      el.confirm.value = '';
      el.globalRefs.value = Array.isArray(v.refs) ? v.refs.join('\n') : (v.refs || '');
      el.imageSize.dataset.want = v.imageSize || '';
      el.outputFormat.dataset.want = v.outputFormat || '';
      el.rows.replaceChildren();
      const rows = (v.rows && v.rows.length ? v.rows : [{}]).slice(0, MAX_ROWS);
      for (const r of rows) addRow(r);
      onModelChange();
    } finally {
      state.restoring = false;
    }
    saveDraft();
  }

  function saveDraft() {
    if (state.restoring) return;
    stored.set(DRAFT_KEY, formValues());
  }

  function collect() {
    const rows = rowItems().map((li) => {
      const row = { prompt: field(li, 'prompt').value.trim(), variants: Number(field(li, 'variants').value) || 1 };
      const refs = parseRefs(field(li, 'refs').value);
      if (refs.length) row.refs = refs;
      const ar = field(li, 'aspectRatio').value;
      if (ar) row.aspectRatio = ar;
      const seed = field(li, 'seed');
      if (!seed.closest('.field').hidden && seed.value !== '') row.seed = Number(seed.value);
      return row;
    });
    const body = { runMode: isLive() ? 'live' : 'dry_run', rows };
    if (el.model.value) body.model = el.model.value;
    if (el.imageSize.value) body.imageSize = el.imageSize.value;
    if (el.outputFormat.value) body.outputFormat = el.outputFormat.value;
    const refs = parseRefs(el.globalRefs.value);
    if (refs.length) body.refs = refs;
    if (isLive()) body.confirm = el.confirm.value;
    return body;
  }

  // update recomputes everything that follows the form: the estimate, the
  // budget warning, whether the submit button is enabled, and the draft.
  function update() {
    const live = isLive();
    el.confirmField.hidden = !live;
    const body = collect();
    const images = body.rows.reduce((n, r) => n + r.variants, 0);
    const m = selectedModel();
    if (m) {
      const each = (body.imageSize && m.pricesUsd && m.pricesUsd[body.imageSize]) || m.priceUsd;
      const cost = images * each;
      setText(el.estimate, 'Estimate: ' + plural(images, 'image', 'images') + ' × ' + money(each) + ' = ' + money(cost) +
        (live ? ', charged to your daily budget.' : ' — a dry run makes placeholder images and is not charged.'));
      const b = state.budget;
      const over = live && b && cost > b.remainingUsd + 1e-9;
      el.budgetWarning.hidden = !over;
      if (over) {
        setText(el.budgetWarning, 'This batch (' + money(cost) + ') exceeds what remains of today\u2019s budget (' +
          money(b.remainingUsd) + '): the API will refuse it. Remove rows or variants, or run it tomorrow.');
      }
    } else {
      setText(el.estimate, 'Estimate: ' + plural(images, 'image', 'images') + '.');
      el.budgetWarning.hidden = true;
    }
    const confirmed = el.confirm.value === 'CONFIRM';
    el.submit.disabled = state.submitting || state.uploading > 0 || !m || (live && !confirmed);
    setText(el.submitHint, state.submitting ? 'Submitting…'
      : state.uploading > 0 ? 'Waiting for uploads to finish…'
        : !m ? 'Waiting for the model list.'
          : live && !confirmed ? 'Type CONFIRM above to enable a live run.' : '');
    saveDraft();
  }

  function renderBudget() {
    const b = state.budget;
    if (!b) return;
    el.budget.textContent = 'Budget for ' + b.day + ' (UTC): ' + money(b.remainingUsd) + ' remaining of ' + money(b.limitUsd) +
      ' (' + money(b.spentUsd) + ' spent, ' + money(b.reservedUsd) + ' reserved).';
  }

  async function loadBudget() {
    try {
      state.budget = await api('GET', '/budget');
      renderBudget();
    } catch (err) {
      state.budget = null;
      const doc = (err && err.doc) || {};
      el.budget.textContent = 'Budget unavailable: ' + (doc.title || err.message) + (doc.code ? ' (' + doc.code + ')' : '') + '.';
    }
    update();
  }

  // settleBudget rereads the budget after a live batch until its reservation
  // is settled to what was made (the finisher does so just after the last row).
  async function settleBudget() {
    for (let i = 0; i < 5; i++) {
      await loadBudget();
      if (!state.budget || state.budget.reservedUsd <= 0) return;
      await sleep(1000);
    }
  }

  async function loadModels() {
    try {
      const ms = await api('GET', '/models');
      state.models = ms;
      el.model.replaceChildren(...ms.models.map((m) => h('option', { value: m.name, text: m.name })));
      const want = state.wantModel;
      el.model.value = want && ms.models.some((m) => m.name === want) ? want : ms.default;
      el.live.disabled = !ms.liveAvailable;
      el.liveHint.textContent = ms.liveAvailable ? '' : 'Live runs are not available on this deployment (no image model is configured).';
      if (!ms.liveAvailable) el.dry.checked = true;
      onModelChange();
    } catch (err) {
      showProblem(err);
    }
  }

  function onModelChange() {
    const m = selectedModel();
    if (m) {
      state.wantModel = m.name;
      el.modelHint.textContent = money(m.priceUsd) + ' per image · up to ' + plural(m.maxRefs, 'reference image', 'reference images') + ' per row' +
        (m.seed ? ' · takes a seed per row.' : '.');
      el.refsHint.textContent = m.maxRefs > 0 ? 'Image URLs (https or gs), separated by commas or new lines; used after each row\u2019s own.'
        : 'This model takes no reference images.';
    }
    fillChoice(el.imageSize, m && m.imageSizes, (v) => v + (m && m.pricesUsd && m.pricesUsd[v] !== undefined ? ' · ' + money(m.pricesUsd[v]) + ' per image' : ''));
    fillChoice(el.outputFormat, m && m.outputFormats, (v) => v.toUpperCase());
    onSizeChange();
    if (m && m.liveAvailable === false && isLive()) el.dry.checked = true;
    if (state.models) el.live.disabled = !state.models.liveAvailable || (m && m.liveAvailable === false);
    for (const li of rowItems()) {
      fillAspect(field(li, 'aspectRatio'));
      showSeed(li);
    }
    update();
  }

  // fillChoice offers the model's values (the first is its default), keeping
  // the one chosen when the new model has it too.
  function fillChoice(select, values, label) {
    const keep = select.value || select.dataset.want || '';
    const vs = values || [];
    select.replaceChildren(...vs.map((v, i) => h('option', { value: i === 0 ? '' : v, text: label(v) + (i === 0 ? ' (default)' : '') })));
    select.value = vs.indexOf(keep) > 0 ? keep : '';
    delete select.dataset.want;
    select.disabled = vs.length < 2;
  }

  function onSizeChange() {
    const m = selectedModel();
    const size = el.imageSize.value || (m && m.imageSizes && m.imageSizes[0]) || '';
    const price = m && m.pricesUsd && m.pricesUsd[size];
    el.imageSizeHint.textContent = price !== undefined ? money(price) + ' per image at ' + size + '.' : '';
  }

  // showSeed shows a row's seed field only for models that honour seeds.
  function showSeed(li) {
    const m = selectedModel();
    field(li, 'seed').closest('.field').hidden = !(m && m.seed);
  }

  async function onSubmit(ev) {
    ev.preventDefault();
    update();
    if (el.submit.disabled) return;
    clearProblem();
    const body = collect();
    const form = formValues();
    state.submitting = true;
    update();
    try {
      const res = await api('POST', '/batch/images', body);
      rememberRequest(res.batchId, form);
      if (body.runMode === 'live') {
        el.confirm.value = ''; // every live run is confirmed anew
        if (res.budget) { state.budget = res.budget; renderBudget(); }
      }
      startBatch(res, { runMode: body.runMode, rows: body.rows }, { focus: true });
      loadList(false);
    } catch (err) {
      showProblem(err);
    } finally {
      state.submitting = false;
      update();
    }
  }

  function clearForm() {
    clearProblem();
    applyForm({ rows: [{}] });
    field(rowItems()[0], 'prompt').focus();
    announce('The form is cleared.');
  }

  // ---- rows from CSV ------------------------------------------------------

  // parseCSV reads RFC 4180 CSV: quoted fields may hold commas, quotes ("")
  // and line breaks. It answers records with the line each starts on.
  function parseCSV(text) {
    const records = [];
    let rec = [];
    let f = '';
    let quoted = false;
    let line = 1;
    let start = 1;
    let fieldStarted = false;
    const s = String(text).replace(/\r\n?/g, '\n');
    for (let i = 0; i < s.length; i++) {
      const c = s[i];
      if (quoted) {
        if (c === '"') {
          if (s[i + 1] === '"') { f += '"'; i++; } else quoted = false;
        } else {
          if (c === '\n') line++;
          f += c;
        }
        continue;
      }
      if (c === '"' && !fieldStarted) { quoted = true; fieldStarted = true; continue; }
      if (c === ',') { rec.push(f); f = ''; fieldStarted = false; continue; }
      if (c === '\n') {
        rec.push(f);
        records.push({ line: start, fields: rec });
        rec = []; f = ''; fieldStarted = false;
        line++;
        start = line;
        continue;
      }
      f += c;
      if (c !== ' ' && c !== '\t') fieldStarted = true;
    }
    if (quoted) return { error: 'Line ' + start + ': a quoted field is not closed.' };
    if (f !== '' || rec.length) { rec.push(f); records.push({ line: start, fields: rec }); }
    return { records: records.filter((r) => r.fields.some((x) => x.trim() !== '')) };
  }

  const CSV_COLUMNS = { prompt: 'prompt', variants: 'variants', aspectratio: 'aspectRatio', 'aspect ratio': 'aspectRatio', aspect_ratio: 'aspectRatio', refs: 'refs', references: 'refs' };

  // csvRows turns CSV text into form rows, or the reasons it cannot.
  function csvRows(text) {
    const parsed = parseCSV(text);
    if (parsed.error) return { errors: [parsed.error] };
    let records = parsed.records;
    let columns = ['prompt', 'variants', 'aspectRatio', 'refs'];
    const errors = [];
    if (records.length && records[0].fields[0].trim().toLowerCase() === 'prompt') {
      columns = records[0].fields.map((x) => CSV_COLUMNS[x.trim().toLowerCase()] || null);
      records[0].fields.forEach((x, i) => {
        if (!columns[i]) errors.push('Line ' + records[0].line + ': unknown column “' + x.trim() + '” (use prompt, variants, aspectRatio, refs).');
      });
      records = records.slice(1);
    }
    if (!records.length) errors.push('No rows: write one row per line.');
    const m = selectedModel();
    const ratios = (m && m.aspectRatios) || [];
    const rows = [];
    for (const r of records) {
      const row = { prompt: '', variants: 1, aspectRatio: '', refs: [] };
      r.fields.forEach((x, i) => {
        const col = columns[i];
        const v = x.trim();
        if (!col) {
          if (v && i >= columns.length) errors.push('Line ' + r.line + ': more fields than columns.');
          return;
        }
        if (col === 'prompt') row.prompt = v;
        else if (col === 'variants') {
          if (v === '') return;
          if (!/^[123]$/.test(v)) errors.push('Line ' + r.line + ': variants must be 1, 2 or 3, not “' + v + '”.');
          else row.variants = Number(v);
        } else if (col === 'aspectRatio') {
          if (v && ratios.length && !ratios.includes(v)) errors.push('Line ' + r.line + ': aspect ratio “' + v + '” is not one of ' + ratios.join(', ') + '.');
          else row.aspectRatio = v;
        } else if (col === 'refs') row.refs = v.split(/[\s|]+/).filter(Boolean);
      });
      if (!row.prompt) errors.push('Line ' + r.line + ': the prompt is empty.');
      rows.push(row);
    }
    return { rows, errors };
  }

  // addCSVRows adds the rows of text to the form; a form holding only an
  // empty row is replaced. Problems are shown next to the CSV box.
  function addCSVRows(text) {
    clearFieldError(el.csvText);
    const { rows, errors } = csvRows(text);
    const keep = rowItems().filter((li) => !rowIsEmpty(li));
    if (!errors.length && keep.length + rows.length > MAX_ROWS) {
      errors.push('These are ' + plural(rows.length, 'row', 'rows') + '; the form has room for ' + (MAX_ROWS - keep.length) + ' more (at most ' + MAX_ROWS + ' rows a batch).');
    }
    if (errors.length) {
      el.csv.open = true;
      setFieldError(el.csvText, errors.join('\n'));
      el.csvText.focus();
      return false;
    }
    state.restoring = true;
    try {
      for (const li of rowItems()) if (rowIsEmpty(li)) li.remove();
      for (const r of rows) addRow(r);
    } finally {
      state.restoring = false;
    }
    renumber();
    update();
    el.csvText.value = '';
    announce('Added ' + plural(rows.length, 'row', 'rows') + ' from CSV.');
    field(rowItems()[keep.length], 'prompt').focus();
    return true;
  }

  // ---- reference uploads ----------------------------------------------------

  function hex(buf) { return Array.from(new Uint8Array(buf), (b) => b.toString(16).padStart(2, '0')).join(''); }

  // uploadFiles stores each image through POST /uploads and a PUT to its
  // signed URL, then adds the gs:// reference to the refs field.
  async function uploadFiles(files, refsField, statusEl) {
    for (const f of files) {
      if (!UPLOAD_TYPES.includes(f.type)) {
        setFieldError(refsField, f.name + ' is not a PNG, JPEG or WebP image: it cannot be uploaded.');
        continue;
      }
      state.uploading++;
      update();
      statusEl.textContent = 'Uploading ' + f.name + '…';
      try {
        const buf = await f.arrayBuffer();
        const req = { contentType: f.type, size: f.size };
        if (window.crypto && crypto.subtle) req.sha256 = hex(await crypto.subtle.digest('SHA-256', buf));
        const up = await api('POST', '/uploads', req);
        const headers = Object.assign({}, up.headers || {});
        if (!Object.keys(headers).some((k) => k.toLowerCase() === 'content-type')) headers['Content-Type'] = f.type;
        let resp;
        try {
          resp = await fetch(up.uploadUrl, { method: up.method || 'PUT', headers, body: buf, credentials: 'omit' });
        } catch (err) {
          throw new ProblemError(0, { title: 'Storage could not be reached', detail: String((err && err.message) || err) });
        }
        if (!resp.ok) {
          throw new ProblemError(resp.status, { title: 'Storage refused the upload', detail: (await resp.text()).slice(0, 200) });
        }
        const now = refsField.value.replace(/\s+$/, '');
        refsField.value = (now ? now + '\n' : '') + up.ref;
        clearFieldError(refsField);
        statusEl.textContent = 'Uploaded ' + f.name + '; usable in batches until ' + when.format(new Date(up.deleteAfter)) + '.';
        announce('Uploaded ' + f.name + '.');
      } catch (err) {
        const doc = (err && err.doc) || {};
        statusEl.textContent = '';
        setFieldError(refsField, f.name + ' was not uploaded: ' + (doc.title || err.message) + (doc.detail && doc.detail !== doc.title ? ' — ' + doc.detail : '') + (doc.code ? ' (' + doc.code + ')' : ''));
      } finally {
        state.uploading--;
        update();
      }
    }
  }

  function dropZone(target) {
    const zone = target && target.closest ? target.closest('.drop') : null;
    return zone && el.form.contains(zone) ? zone : null;
  }

  function hasFiles(e) { return e.dataTransfer && Array.from(e.dataTransfer.types || []).includes('Files'); }

  function wireDrops() {
    // A file dropped anywhere else must not replace the page.
    document.addEventListener('dragover', (e) => { if (hasFiles(e)) e.preventDefault(); });
    document.addEventListener('drop', (e) => { if (hasFiles(e) && !dropZone(e.target)) e.preventDefault(); });
    el.form.addEventListener('dragover', (e) => {
      const z = dropZone(e.target);
      if (!z || !hasFiles(e)) return;
      e.preventDefault();
      e.dataTransfer.dropEffect = 'copy';
      z.classList.add('dragging');
    });
    el.form.addEventListener('dragleave', (e) => {
      const z = dropZone(e.target);
      if (z && !z.contains(e.relatedTarget)) z.classList.remove('dragging');
    });
    el.form.addEventListener('drop', (e) => {
      const z = dropZone(e.target);
      if (!z || !hasFiles(e)) return;
      e.preventDefault();
      z.classList.remove('dragging');
      const refs = $(z.dataset.drop);
      uploadFiles(Array.from(e.dataTransfer.files), refs, z.querySelector('.upload-status'));
    });
  }

  // ---- the batch view ---------------------------------------------------

  // startBatch shows a batch and follows its progress stream. meta is
  // {runMode, rows: [{prompt, variants}]}; opts.initial is its state when it
  // is known already (a batch reopened), opts.focus moves the focus to it.
  function startBatch(res, meta, opts) {
    opts = opts || {};
    stopWatching();
    current = {
      id: res.batchId, progressUrl: res.progressUrl, tokenExpiresAt: res.progressTokenExpiresAt || '', runMode: meta.runMode,
      model: (res.estimate && res.estimate.model) || '',
      rows: meta.rows.map((r, i) => ({ index: i, prompt: r.prompt, variants: r.variants, version: -1, status: 'queued', item: null, cells: [], variantState: [], links: [] })),
      es: null, lastId: '', conn: 0, failures: 0, recovering: false, finished: false, log: [],
      totals: null, totalsKey: '', lastChange: Date.now(), state: opts.initial || null, cancellation: null,
    };
    el.batchId.textContent = 'Batch ' + res.batchId + ' · ' + (meta.runMode === 'live' ? 'live' : 'dry run') + ' · ' +
      plural(res.estimate.images, 'image', 'images') + ' on ' + res.estimate.model + (res.round ? ' · retry ' + res.round : '');
    el.summary.hidden = true;
    el.links.replaceChildren();
    el.cancel.hidden = FINAL.has(res.status);
    el.cancel.disabled = false;
    el.cancel.textContent = 'Cancel batch';
    el.cancelResult.hidden = true;
    el.cancelResult.textContent = '';
    el.retry.hidden = true;
    el.retry.disabled = false;
    el.retry.textContent = 'Retry failed';
    el.stall.hidden = true;
    el.downloadAll.href = resolve('/batch/' + encodeURIComponent(res.batchId) + '/archive');
    clearBatchProblem();
    buildGrid(res);
    renderTotals({ status: res.status, rowCounts: {}, variantCounts: { queued: res.estimate.images }, costUsd: 0 });
    if (opts.initial) {
      for (const row of opts.initial.rows || []) applyRow(current, row);
      renderTotals(opts.initial);
    }
    el.batch.hidden = false;
    // The address names the batch, so a reload comes back to it.
    history.replaceState(null, '', '#batch=' + encodeURIComponent(res.batchId));
    if (opts.focus) el.batchTitle.focus();
    openStream(res.progressUrl, '');
  }

  // watchBatch reopens a batch (named in the address, or picked from the
  // list): its state, then its stream — which answers 204 when the batch is
  // finished.
  async function watchBatch(id, focus) {
    try {
      const b = await api('GET', '/batch/' + encodeURIComponent(id));
      const t = await api('GET', '/batch/' + encodeURIComponent(id) + '/progress-token');
      const images = (b.rows || []).reduce((n, r) => n + (r.variants || []).length, 0);
      startBatch({ batchId: b.batchId, progressUrl: t.progressUrl, progressTokenExpiresAt: t.progressTokenExpiresAt, status: b.status, estimate: { images, model: b.model }, rows: [] },
        { runMode: b.runMode, rows: (b.rows || []).map((r) => ({ prompt: r.prompt, variants: (r.variants || []).length })) }, { initial: b, focus });
    } catch (err) {
      if (focus) {
        showListProblem(err);
      } else {
        showProblem(err);
      }
    }
  }

  function batchInAddress() {
    const m = /^#batch=([\w-]{1,64})$/.exec(location.hash);
    return m ? m[1] : '';
  }

  function buildGrid(res) {
    el.grid.replaceChildren();
    const dropped = new Map((res.rows || []).map((r) => [r.index, r.droppedRefs || []]));
    for (const r of current.rows) {
      const head = h('div', { class: 'row-head' },
        h('span', { class: 'row-num', text: 'Row ' + (r.index + 1) }), ' ',
        h('span', { class: 'badge', 'data-status': 'queued', text: 'queued' }),
        h('p', { class: 'prompt', text: r.prompt }),
        h('p', { class: 'row-error', hidden: true }));
      for (const d of dropped.get(r.index) || []) head.append(h('p', { class: 'muted', text: 'Reference dropped: ' + d.url + ' (' + d.reason + ')' }));
      const list = h('ul', { class: 'variants', 'aria-label': 'Row ' + (r.index + 1) + ' images' });
      for (let v = 0; v < r.variants; v++) {
        const cell = h('li', { class: 'cell', 'data-row': String(r.index), 'data-variant': String(v) });
        r.cells.push(cell);
        list.append(cell);
        renderCell(r, v, { index: v, status: 'queued' });
      }
      r.item = h('li', { class: 'grid-row', 'data-row': String(r.index) }, head, list);
      el.grid.append(r.item);
    }
  }

  const STATUS_TEXT = { queued: 'Queued', running: 'Generating…', done: 'Done', failed: 'Failed', cancelled: 'Cancelled' };

  function cellLabel(r, v) { return r.prompt + ' — variant ' + (v + 1); }

  function renderCell(r, v, variant) {
    const cell = r.cells[v];
    if (!cell) return;
    r.variantState[v] = variant;
    if (variant.link) r.links[v] = variant.link;
    const status = variant.status || 'queued';
    const url = status === 'done' ? variant.url || '' : '';
    if (cell.dataset.status === status && (cell.dataset.url || '') === url) return;
    cell.dataset.status = status;
    cell.dataset.url = url;
    const label = cellLabel(r, v);
    const where = ' row ' + (r.index + 1) + ', variant ' + (v + 1);
    if (status === 'done' && url) {
      const img = cell.querySelector('img');
      if (img) { // a fresh signed URL for the same image
        img.src = url;
        cell.querySelector('a.download').href = url;
        return;
      }
      const im = h('img', { src: url, alt: label, decoding: 'async' });
      im.addEventListener('error', () => onImageError(cell));
      const view = h('button', { type: 'button', class: 'view' }, im);
      view.addEventListener('click', () => openViewer(r, v, view));
      const dl = h('a', { class: 'download', href: url, download: imageName(r.index, v, r.prompt, 'image/png') },
        'Download', h('span', { class: 'visually-hidden', text: where }));
      dl.addEventListener('click', (e) => { e.preventDefault(); saveImage(r, v, dl); });
      const copy = h('button', { type: 'button', class: 'secondary copy' }, 'Copy link', h('span', { class: 'visually-hidden', text: where }));
      copy.addEventListener('click', () => copyLink(r, v, copy));
      cell.replaceChildren(view, h('div', { class: 'tools' }, dl, copy));
      return;
    }
    if (status === 'failed' || (variant.error && status !== 'done')) {
      const e = variant.error || { code: 'FAILED', message: '' };
      cell.replaceChildren(
        h('span', { class: 'badge', 'data-status': status, text: STATUS_TEXT[status] || status }),
        h('p', { class: 'error' }, h('code', { text: e.code }), e.message ? ' ' + e.message : ''),
        HINTS[e.code] ? h('p', { class: 'hint', text: HINTS[e.code] }) : null,
        h('span', { class: 'visually-hidden', text: label }));
      return;
    }
    cell.replaceChildren(
      h('span', { class: 'badge', 'data-status': status, text: STATUS_TEXT[status] || status }),
      h('span', { class: 'visually-hidden', text: ' ' + label }));
  }

  function onImageError(cell) {
    cell.dataset.image = 'broken';
    // A signed URL may have expired while the page sat idle: fetch fresh ones once.
    if (current && !current.refreshedImages) {
      current.refreshedImages = true;
      loadState(current).catch(() => {});
    }
  }

  // applyRow renders a row snapshot unless it is older than what is shown.
  function applyRow(c, row) {
    const r = c.rows[row.index];
    if (!r || row.version < r.version) return false;
    const changed = row.version > r.version;
    r.version = row.version;
    r.status = row.status;
    const badge = r.item.querySelector('.row-head .badge');
    badge.dataset.status = row.status;
    badge.textContent = row.status;
    // A row error its variants already show is not repeated.
    const shown = row.error && (row.variants || []).some((v) => v.error && v.error.code === row.error.code);
    const err = r.item.querySelector('.row-error');
    err.hidden = !row.error || shown;
    err.textContent = row.error && !shown ? row.error.code + ': ' + (row.error.message || '') : '';
    for (const v of row.variants || []) renderCell(r, v.index, v);
    return changed;
  }

  function renderTotals(t) {
    const vc = t.variantCounts || {};
    const made = vc.done || 0;
    const all = (vc.queued || 0) + (vc.running || 0) + made + (vc.failed || 0) + (vc.cancelled || 0);
    let s = cap(t.status || 'queued') + ' — ' + made + ' of ' + plural(all, 'image', 'images') + ' made';
    if (vc.running) s += ', ' + vc.running + ' generating';
    if (vc.queued) s += ', ' + vc.queued + ' queued';
    if (vc.failed) s += ', ' + vc.failed + ' failed';
    if (vc.cancelled) s += ', ' + vc.cancelled + ' cancelled';
    s += '. Cost ' + money(t.costUsd) + '.';
    setText(el.totals, s);
    el.totals.dataset.status = t.status || '';
    if (current) current.totals = t;
  }

  // ---- per image: view, download, lasting link ----------------------------

  // linkFor answers the lasting link of an image: GET /batch/{id} carries
  // them (stream events carry only the short-lived URL).
  async function linkFor(c, r, v) {
    if (!r.links[v]) await loadState(c);
    return r.links[v] || '';
  }

  async function copyText(text) {
    state.lastCopied = text;
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (_) {
      // No clipboard permission (or an old browser): the selection way.
      const back = document.activeElement;
      const ta = h('textarea', { class: 'visually-hidden', readonly: true, 'aria-hidden': 'true' });
      ta.value = text;
      document.body.append(ta);
      ta.select();
      let ok = false;
      try { ok = document.execCommand('copy'); } catch (_) { ok = false; }
      ta.remove();
      if (back && back.focus) back.focus();
      return ok;
    }
  }

  async function copyLink(r, v, button, statusEl) {
    const c = current;
    const say = (s) => { if (statusEl) statusEl.textContent = s; announce(s); };
    try {
      const link = await linkFor(c, r, v);
      if (!link) { say('The image has no lasting link yet.'); return; }
      const abs = resolve(link);
      const ok = await copyText(abs);
      say(ok ? 'Lasting link to row ' + (r.index + 1) + ', variant ' + (v + 1) + ' copied.' : 'Could not copy: open the image to select its lasting link.');
      if (ok && button) {
        button.dataset.copied = 'true';
      }
    } catch (err) {
      say('Could not read the lasting link: ' + ((err.doc && err.doc.title) || err.message) + '.');
    }
  }

  // save downloads blob under name.
  function save(blob, name) {
    const u = URL.createObjectURL(blob);
    const a = h('a', { href: u, download: name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(u), 60000);
  }

  // saveImage downloads an image under the name the archive gives it. The
  // signed URL is on another origin, where a link's download name does not
  // apply, so the image is fetched first; if storage refuses that (no CORS
  // for this origin), the image opens in a new tab instead.
  async function saveImage(r, v, anchor) {
    const url = (r.variantState[v] && r.variantState[v].url) || anchor.href;
    try {
      const resp = await fetch(url, { credentials: 'omit' });
      if (!resp.ok) throw new Error('HTTP ' + resp.status);
      const blob = await resp.blob();
      save(blob, imageName(r.index, v, r.prompt, blob.type));
      announce('Downloading row ' + (r.index + 1) + ', variant ' + (v + 1) + '.');
    } catch (_) {
      window.open(url, '_blank', 'noopener,noreferrer');
    }
  }

  let viewerReturn = null;
  let viewerAt = null;

  function openViewer(r, v, opener) {
    const c = current;
    const st = r.variantState[v] || {};
    viewerReturn = opener || document.activeElement;
    viewerAt = { c, r, v };
    el.viewerTitle.textContent = 'Row ' + (r.index + 1) + ', variant ' + (v + 1);
    el.viewerImg.src = st.url || '';
    el.viewerImg.alt = cellLabel(r, v);
    el.viewerPrompt.textContent = r.prompt;
    el.viewerDownload.href = st.url || '#';
    el.viewerDownload.download = imageName(r.index, v, r.prompt, 'image/png');
    el.viewerStatus.textContent = '';
    el.viewerLink.value = r.links[v] ? resolve(r.links[v]) : '';
    if (!r.links[v]) {
      linkFor(c, r, v).then((l) => {
        if (viewerAt && viewerAt.r === r && viewerAt.v === v && l) el.viewerLink.value = resolve(l);
      }).catch(() => {});
    }
    el.viewer.showModal();
  }

  // ---- the progress stream ---------------------------------------------

  function setStream(text) { el.streamState.textContent = text; }

  function progressed(c) {
    c.lastChange = Date.now();
    if (!el.stall.hidden) el.stall.hidden = true;
  }

  function openStream(url, resumeFrom) {
    const c = current;
    const u = new URL(resolve(url));
    // A new EventSource starts without a Last-Event-ID: say where we were.
    if (resumeFrom) u.searchParams.set('lastEventId', resumeFrom);
    c.conn++;
    const conn = c.conn;
    const es = new EventSource(u.toString());
    c.es = es;
    const mine = () => current === c && c.es === es;
    const seen = (e) => { if (e.lastEventId) c.lastId = e.lastEventId; };
    es.addEventListener('open', () => {
      if (!mine()) return;
      c.failures = 0;
      progressed(c);
      setStream('Connected to the progress stream.');
    });
    es.addEventListener('row', (e) => {
      if (!mine()) return;
      seen(e);
      const row = JSON.parse(e.data);
      c.log.push({ row: row.index, version: row.version, status: row.status, conn, id: e.lastEventId });
      if (applyRow(c, row)) progressed(c);
    });
    es.addEventListener('batch', (e) => {
      if (!mine()) return;
      seen(e);
      onTotals(c, JSON.parse(e.data));
    });
    es.addEventListener('done', (e) => {
      if (!mine()) return;
      seen(e);
      onTotals(c, JSON.parse(e.data));
      finish(c);
    });
    es.addEventListener('reconnect', () => {
      // The server ends this stream before its request timeout; EventSource
      // reconnects by itself and resumes with Last-Event-ID.
      if (mine()) setStream('The server rotated the stream; resuming…');
    });
    es.addEventListener('error', () => {
      if (!mine()) return;
      if (es.readyState === EventSource.CONNECTING) {
        setStream('Connection lost; reconnecting…'); // EventSource retries by itself
        return;
      }
      // EventSource gave up: 204 (the batch is finished), 401 (the token in the
      // URL expired) or another answer that is not a stream.
      es.close();
      c.es = null;
      recover(c);
    });
  }

  function onTotals(c, t) {
    const key = JSON.stringify([t.status, t.variantCounts, t.rowCounts, t.costUsd]);
    if (key !== c.totalsKey) {
      c.totalsKey = key;
      progressed(c);
    }
    renderTotals(t);
  }

  // checkStall says so when the stream is open but no row has moved for
  // state.stallMs: rows waiting for the queue, or a model retrying.
  function checkStall() {
    const c = current;
    if (!c || c.finished || !c.es || c.es.readyState !== EventSource.OPEN) {
      if (!el.stall.hidden) el.stall.hidden = true;
      return;
    }
    const idle = Date.now() - c.lastChange;
    if (idle < state.stallMs) {
      if (!el.stall.hidden) el.stall.hidden = true;
      return;
    }
    const s = Math.floor(idle / 1000);
    setText(el.stall, 'No progress for ' + s + ' s: the stream is connected, but no row has changed. ' +
      'Rows may be waiting for a free worker or retrying after a model error; they go on by themselves, and you may cancel the batch.');
    if (el.stall.hidden) {
      el.stall.hidden = false;
      announce('No progress for ' + s + ' seconds.');
    }
  }

  function stopWatching() {
    if (current && current.es) current.es.close();
    if (current) current.es = null;
    current = null;
  }

  // recover reads the batch's state; a finished batch is rendered, a running
  // one is streamed again with a fresh token from where it was.
  async function recover(c) {
    if (c.finished || c.recovering) return;
    c.recovering = true;
    try {
      for (;;) {
        try {
          const b = await loadState(c);
          if (current !== c || c.finished || c.es) return;
          if (FINAL.has(b.status)) { finish(c, b); return; }
          if (c.failures > 0) {
            setStream('Reconnecting to the progress stream…');
            await sleep(Math.min(30000, 1000 * 2 ** (c.failures - 1)));
            if (current !== c || c.finished || c.es) return;
          }
          c.failures++;
          const t = await api('GET', '/batch/' + encodeURIComponent(c.id) + '/progress-token');
          if (current !== c || c.finished || c.es) return;
          c.progressUrl = t.progressUrl;
          c.tokenExpiresAt = t.progressTokenExpiresAt;
          setStream('Resuming the progress stream…');
          openStream(t.progressUrl, c.lastId);
          return;
        } catch (err) {
          if (current !== c) return;
          showBatchProblem(err);
          if (err.status === 401 || err.status === 403 || err.status === 404) {
            setStream('Stopped following the batch: ' + ((err.doc && err.doc.title) || err.message) + '.');
            return;
          }
          await sleep(Math.min(30000, 1000 * 2 ** c.failures++));
        }
      }
    } finally {
      c.recovering = false;
    }
  }

  // loadState renders GET /batch/{id}: fresh URLs, and lasting links.
  async function loadState(c) {
    const b = await api('GET', '/batch/' + encodeURIComponent(c.id));
    if (current === c) {
      c.state = b;
      for (const row of b.rows || []) applyRow(c, row);
      renderTotals(b);
      clearBatchProblem();
    }
    return b;
  }

  async function finish(c, final) {
    if (c.finished) return;
    c.finished = true;
    if (c.es) c.es.close();
    c.es = null;
    el.stall.hidden = true;
    el.cancel.disabled = true;
    el.cancel.hidden = true;
    setStream('The batch is finished.');
    if (c.runMode === 'live') settleBudget();
    try {
      const b = final || await loadState(c);
      if (current !== c) return;
      c.state = b;
      renderSummary(c, b);
      const s = el.summaryText.dataset.short;
      announce('Batch finished. ' + s);
      // Focus goes to the result unless the user is typing elsewhere or
      // looking at an image.
      const a = document.activeElement;
      const typing = a && el.form.contains(a) && a.matches('input, textarea, select');
      const inDialog = a && a.closest && a.closest('dialog[open]');
      if (!typing && !inDialog) el.summaryTitle.focus();
      refreshListed(b);
    } catch (err) {
      if (current === c) showBatchProblem(err);
    }
  }

  function retryable(b) {
    const vc = (b && b.variantCounts) || {};
    return (vc.failed || 0) + (vc.cancelled || 0);
  }

  function renderSummary(c, b) {
    const vc = b.variantCounts || {};
    let s = cap(b.status) + ': ' + plural(vc.done || 0, 'image', 'images') + ' made';
    if (vc.failed) s += ', ' + vc.failed + ' failed';
    if (vc.cancelled) s += ', ' + vc.cancelled + ' cancelled';
    s += '. Cost ' + money(b.costUsd) + (c.runMode === 'live' ? '.' : ' (dry run, not charged).');
    el.summaryText.dataset.short = s;
    el.summaryText.textContent = s + (vc.done ? ' These links keep working for as long as the images are kept:' : '');
    el.links.replaceChildren();
    for (const row of b.rows || []) {
      for (const v of row.variants || []) {
        if (!v.link) continue;
        const label = 'Row ' + (row.index + 1) + ', variant ' + (v.index + 1) + ': ' + row.prompt;
        el.links.append(h('li', {}, h('a', { href: resolve(v.link), target: '_blank', rel: 'noopener noreferrer', text: label })));
      }
    }
    const n = retryable(b);
    el.retry.hidden = n === 0;
    el.retry.textContent = n ? 'Retry ' + plural(n, 'failed image', 'failed images') : 'Retry failed';
    el.summary.hidden = false;
  }

  let batchProblem = null;
  function showBatchProblem(err) {
    if (!batchProblem) {
      batchProblem = h('div', { class: 'problem', role: 'alert' });
      el.totals.after(batchProblem);
    }
    renderProblem(batchProblem, err);
  }
  function clearBatchProblem() {
    if (batchProblem) { batchProblem.hidden = true; batchProblem.replaceChildren(); }
  }

  // ---- cancel ----------------------------------------------------------------

  // onCancel says what a cancel keeps and charges before it is asked.
  function onCancel() {
    const c = current;
    if (!c || c.finished) return;
    const vc = (c.totals && c.totals.variantCounts) || {};
    const live = c.runMode === 'live';
    const made = vc.done || 0;
    const running = vc.running || 0;
    el.cancelDialogText.replaceChildren(
      h('p', { text: 'Images already made (' + made + ' so far) are kept' + (live ? ' and charged.' : '.') }),
      h('p', { text: 'Variants being generated right now' + (running ? ' (' + running + ')' : '') + ' finish and are kept' + (live ? ', and charged too.' : '.') }),
      h('p', { text: 'Rows not started yet are cancelled' + (live ? ' and not charged: their part of the reservation is released.' : '.') }),
      live ? null : h('p', { class: 'muted', text: 'A dry run is never charged.' }));
    el.cancelDialog.showModal();
  }

  // cancellationText is what the cancel answer says it left.
  function cancellationText(cn, live) {
    const parts = ['Cancelled.'];
    parts.push(plural(cn.kept, 'image', 'images') + ' made before the cancel ' + (cn.kept === 1 ? 'is' : 'are') + ' kept' +
      (live ? ' and charged (' + money(cn.chargedUsd) + ').' : '.'));
    if (cn.mayStillMake) {
      parts.push('Up to ' + plural(cn.mayStillMake, 'more image', 'more images') + ' may still be made by rows that were generating' +
        (live ? ', charged up to ' + money(cn.mayStillChargeUsd) + '.' : '.'));
    } else {
      parts.push('Nothing more will be made.');
    }
    if (live) {
      parts.push(money(cn.releasedUsd) + ' of the reservation ' + (cn.finished ? 'is released now.' : 'is released when the last running row stops.'));
    } else {
      parts.push('A dry run is not charged.');
    }
    return parts.join(' ');
  }

  async function doCancel() {
    const c = current;
    if (!c || c.finished) return;
    el.cancel.disabled = true;
    el.cancel.textContent = 'Cancelling…';
    try {
      const b = await api('POST', '/batch/' + encodeURIComponent(c.id) + '/cancel');
      if (current !== c) return;
      for (const row of b.rows || []) applyRow(c, row);
      renderTotals(b);
      el.cancel.textContent = 'Cancelled';
      const cn = b.cancel || b.cancellation;
      if (cn) {
        c.cancellation = cn;
        el.cancelResult.textContent = cancellationText(cn, c.runMode === 'live');
        el.cancelResult.hidden = false;
        el.cancelResult.tabIndex = -1;
        // When the batch ended meanwhile, the focus is on its summary already.
        if (document.activeElement === el.summaryTitle) announce(el.cancelResult.textContent); else el.cancelResult.focus();
      }
      // The stream sends done once the running rows stop; without a stream, finish here.
      if (FINAL.has(b.status) && !c.es) finish(c, b);
    } catch (err) {
      if (current !== c) return;
      showBatchProblem(err);
      el.cancel.disabled = false;
      el.cancel.textContent = 'Cancel batch';
    }
  }

  // ---- retry and run again ---------------------------------------------------

  function onRetry() {
    const c = current;
    if (!c || !c.finished) return;
    const n = retryable(c.state);
    if (c.runMode !== 'live') { doRetry(c, ''); return; }
    const price = state.models && state.models.models.find((m) => m.name === c.model);
    el.retryDialogText.textContent = 'This re-runs ' + plural(n, 'failed or cancelled image', 'failed or cancelled images') +
      ' of the batch under the same batch id; images already made keep their links. It is a live run: it is charged to your daily budget' +
      (price ? ' (up to ' + money(n * price.priceUsd) + ').' : '.');
    el.retryConfirm.value = '';
    el.retryGo.disabled = true;
    el.retryGo.textContent = 'Retry ' + plural(n, 'image', 'images');
    el.retryDialog.showModal();
  }

  async function doRetry(c, confirm) {
    el.retry.disabled = true;
    el.retry.textContent = 'Retrying…';
    const key = (window.crypto && crypto.randomUUID) ? crypto.randomUUID() : String(Date.now()) + Math.random();
    try {
      let res;
      for (let attempt = 1; ; attempt++) {
        try {
          res = await api('POST', '/batch/' + encodeURIComponent(c.id) + '/retry', confirm ? { confirm } : undefined, { 'Idempotency-Key': key });
          break;
        } catch (err) {
          // Every row has stopped, but the batch may still be settling its
          // round for a moment: the API says when to ask again.
          if (err.status !== 409 || err.doc.code !== 'BATCH_NOT_FINISHED' || attempt >= 5 || current !== c) throw err;
          el.retry.textContent = 'Waiting for the batch to settle…';
          await sleep(Math.min(10, err.retryAfter || 2) * 1000);
          if (current !== c) return;
        }
      }
      if (current !== c) return;
      if (res.budget) { state.budget = res.budget; renderBudget(); }
      const n = (res.estimate && res.estimate.images) || 0;
      startBatch(res, { runMode: res.runMode || c.runMode, rows: c.rows.map((r) => ({ prompt: r.prompt, variants: r.variants })) }, { focus: true });
      el.batchId.textContent = el.batchId.textContent.replace(/ · \d+ images? on /, ' · ' + plural(n, 'image', 'images') + ' retried on ');
      announce('Retrying ' + plural(n, 'image', 'images') + '.');
    } catch (err) {
      if (current !== c) return;
      showBatchProblem(err);
      el.retry.disabled = false;
      el.retry.textContent = 'Retry ' + plural(retryable(c.state), 'failed image', 'failed images');
    }
  }

  // runAgain fills the form with a batch: as it was submitted from this
  // browser when it was (references and aspect ratios included), else its
  // prompts and variants as the API lists them.
  async function runAgain(id) {
    let v = rememberedRequest(id);
    let note = '';
    if (!v) {
      try {
        const b = (current && current.id === id && current.state) || await api('GET', '/batch/' + encodeURIComponent(id));
        v = { model: b.model, runMode: b.runMode, refs: '', rows: (b.rows || []).map((r) => ({ prompt: r.prompt, variants: (r.variants || []).length })) };
        note = ' Its reference images and aspect ratios were not submitted from this browser: add them if it had any.';
      } catch (err) {
        showBatchProblem(err);
        return;
      }
    }
    clearProblem();
    applyForm(v);
    el.newBatchTitle.scrollIntoView({ block: 'start' });
    el.newBatchTitle.focus();
    announce('The form holds batch ' + id + ' again: ' + plural(v.rows.length, 'row', 'rows') + '. Review it and submit.' + note);
  }

  // ---- my batches ------------------------------------------------------------

  function showListProblem(err) {
    const doc = (err && err.doc) || {};
    el.listState.textContent = 'Could not load: ' + (doc.title || err.message) + (doc.code ? ' (' + doc.code + ')' : '') + '.';
  }

  // loadList reads a page of GET /batch: the first again, or (more) the next.
  async function loadList(more) {
    const L = state.list;
    if (more && !L.cursor) return;
    const seq = ++L.seq;
    L.loading = true;
    const q = new URLSearchParams({ limit: String(L.limit) });
    if (more) q.set('cursor', L.cursor);
    try {
      const page = await api('GET', '/batch?' + q.toString());
      if (seq !== L.seq) return;
      if (!more) el.batchList.replaceChildren();
      const added = (page.items || []).map(listItem);
      el.batchList.append(...added);
      L.cursor = page.nextCursor || '';
      el.listMore.hidden = !L.cursor;
      const n = el.batchList.children.length;
      setText(el.listState, n === 0 ? 'No batches yet.' : 'Showing ' + plural(n, 'batch', 'batches') + (L.cursor ? ', newest first; older ones follow.' : ', newest first.'));
      if (more && added.length) added[0].querySelector('h3 a').focus();
      fillThumbs(added, seq);
    } catch (err) {
      if (seq === L.seq) showListProblem(err);
    } finally {
      if (seq === L.seq) L.loading = false;
    }
  }

  function listItem(it) {
    const vc = it.variantCounts || {};
    const all = (vc.queued || 0) + (vc.running || 0) + (vc.done || 0) + (vc.failed || 0) + (vc.cancelled || 0);
    const created = it.createdAt ? when.format(new Date(it.createdAt)) : '';
    const link = h('a', { href: '#batch=' + encodeURIComponent(it.batchId), text: 'Batch of ' + created });
    link.addEventListener('click', (e) => { e.preventDefault(); openBatch(it.batchId); });
    let counts = (vc.done || 0) + ' of ' + plural(all, 'image', 'images') + ' made';
    if (vc.failed) counts += ', ' + vc.failed + ' failed';
    if (vc.cancelled) counts += ', ' + vc.cancelled + ' cancelled';
    const again = h('button', { type: 'button', class: 'secondary small' }, 'Run again', h('span', { class: 'visually-hidden', text: ' batch ' + it.batchId }));
    again.addEventListener('click', () => runAgain(it.batchId));
    const li = h('li', { class: 'batch-item', 'data-batch': it.batchId, 'data-status': it.status },
      h('div', { class: 'thumbs' }, h('span', { class: 'none', text: vc.done ? 'Loading images…' : 'No images' })),
      h('div', { class: 'info' },
        h('h3', {}, link),
        h('p', {}, h('span', { class: 'badge', 'data-status': it.status, text: it.status }), ' ', h('span', { class: 'counts', text: counts })),
        h('p', { class: 'meta' }, h('span', { class: 'cost', text: 'Cost ' + money(it.costUsd) + (it.runMode === 'live' ? '' : ' (dry run)') }),
          ' · ' + (it.model || '') + (created ? ' · ' + created : '') + ' · ', h('code', { text: it.batchId })),
        h('div', { class: 'item-actions' }, again)));
    return li;
  }

  // fillThumbs shows up to four images of each listed batch that has some,
  // and names it by its first prompt (GET /batch/{id}, a few at a time).
  async function fillThumbs(items, seq) {
    const queue = items.slice();
    const worker = async () => {
      for (let li = queue.shift(); li; li = queue.shift()) {
        if (seq !== state.list.seq) return;
        try {
          showThumbs(li, await api('GET', '/batch/' + encodeURIComponent(li.dataset.batch)));
        } catch (_) {
          li.querySelector('.thumbs').replaceChildren(h('span', { class: 'none', text: 'Images unavailable' }));
        }
      }
    };
    await Promise.all([worker(), worker(), worker()]);
  }

  // showThumbs names a listed batch by its first prompt and shows up to four
  // of its images, from its state b.
  function showThumbs(li, b) {
    const rows = b.rows || [];
    if (rows.length) {
      li.querySelector('h3 a').textContent = rows[0].prompt + (rows.length > 1 ? ' (+' + plural(rows.length - 1, 'row', 'rows') + ')' : '');
    }
    const urls = [];
    for (const r of rows) for (const v of r.variants || []) if (v.url && urls.length < 4) urls.push(v.url);
    const box = li.querySelector('.thumbs');
    if (urls.length) box.replaceChildren(...urls.map((u) => h('img', { src: u, alt: '', loading: 'lazy', decoding: 'async' })));
    else box.replaceChildren(h('span', { class: 'none', text: 'No images' }));
  }

  // refreshListed shows a batch's new state in the list: in place when it
  // is listed (the pages shown stay), else by reading the first page again.
  function refreshListed(b) {
    const old = Array.from(el.batchList.children).find((li) => li.dataset.batch === b.batchId);
    if (!old) {
      loadList(false);
      return;
    }
    const li = listItem(b);
    old.replaceWith(li);
    showThumbs(li, b);
  }

  function openBatch(id) {
    if (current && current.id === id) {
      el.batchTitle.focus();
      return;
    }
    watchBatch(id, true).then(() => {
      if (current && current.id === id) el.batchTitle.scrollIntoView({ block: 'start' });
    });
  }

  // ---- start ------------------------------------------------------------

  function wireDialogs() {
    for (const d of [el.viewer, el.cancelDialog, el.retryDialog]) {
      for (const b of d.querySelectorAll('[data-close]')) b.addEventListener('click', () => d.close());
    }
    // Focus goes back to what opened the viewer (a dialog does this itself
    // in current browsers; the opener may have been re-rendered meanwhile).
    el.viewer.addEventListener('close', () => {
      const back = viewerReturn;
      viewerReturn = null;
      viewerAt = null;
      el.viewerImg.removeAttribute('src');
      if (back && back.isConnected) back.focus();
    });
    el.viewerCopy.addEventListener('click', () => { if (viewerAt) copyLink(viewerAt.r, viewerAt.v, el.viewerCopy, el.viewerStatus); });
    el.viewerDownload.addEventListener('click', (e) => {
      e.preventDefault();
      if (viewerAt) saveImage(viewerAt.r, viewerAt.v, el.viewerDownload);
    });
    el.cancelKeep.addEventListener('click', () => el.cancelDialog.close());
    el.cancelConfirm.addEventListener('click', () => { el.cancelDialog.close(); doCancel(); });
    el.cancelDialog.addEventListener('close', () => { if (!el.cancel.disabled) el.cancel.focus(); });
    el.retryConfirm.addEventListener('input', () => { el.retryGo.disabled = el.retryConfirm.value !== 'CONFIRM'; });
    el.retryGo.addEventListener('click', () => {
      if (el.retryConfirm.value !== 'CONFIRM' || !current) return;
      el.retryDialog.close();
      doRetry(current, 'CONFIRM');
    });
    el.retryDialog.addEventListener('close', () => { if (!el.retry.hidden && !el.retry.disabled) el.retry.focus(); });
  }

  // onArchive downloads the batch's archive. Without a bearer token the link
  // itself does (the API names the file); with one, the archive is fetched
  // with it, since a link cannot send a header.
  async function onArchive(e) {
    if (!token() || !current) return;
    e.preventDefault();
    try {
      const resp = await fetch(el.downloadAll.href, { headers: authHeaders(), cache: 'no-store' });
      if (!resp.ok) {
        let doc = null;
        try { doc = await resp.json(); } catch (_) { doc = null; }
        throw new ProblemError(resp.status, doc || { title: 'The archive could not be made', status: resp.status });
      }
      const cd = resp.headers.get('Content-Disposition') || '';
      const m = /filename="?([^";]+)"?/.exec(cd);
      save(await resp.blob(), m ? m[1] : 'batch-' + current.id + '.zip');
    } catch (err) {
      showBatchProblem(err);
    }
  }

  function init() {
    el.apiNote.textContent = 'API: ' + (apiBase || 'this site');
    try { el.token.value = sessionStorage.getItem(TOKEN_KEY) || ''; } catch (_) { /* storage disabled */ }
    el.token.addEventListener('change', () => {
      try {
        if (token()) sessionStorage.setItem(TOKEN_KEY, token()); else sessionStorage.removeItem(TOKEN_KEY);
      } catch (_) { /* storage disabled */ }
      loadBudget();
      loadList(false);
    });
    el.tokenClear.addEventListener('click', () => {
      el.token.value = '';
      try { sessionStorage.removeItem(TOKEN_KEY); } catch (_) { /* storage disabled */ }
      el.token.focus();
      loadBudget();
      loadList(false);
    });
    el.addRow.addEventListener('click', () => {
      const li = addRow();
      if (li) field(li, 'prompt').focus();
    });
    el.clearForm.addEventListener('click', clearForm);
    el.csvAdd.addEventListener('click', () => addCSVRows(el.csvText.value));
    el.model.addEventListener('change', onModelChange);
    el.imageSize.addEventListener('change', () => { onSizeChange(); update(); });
    // A field's error goes once the field is edited.
    const edited = (e) => {
      const t = e.target;
      if (t && t.getAttribute && t.getAttribute('aria-invalid') === 'true') clearFieldError(t);
      update();
    };
    el.form.addEventListener('input', edited);
    el.form.addEventListener('change', edited);
    // A CSV table pasted into a prompt (it starts with the prompt column's
    // name) becomes rows.
    el.rows.addEventListener('paste', (e) => {
      const t = e.target;
      if (!t || t.dataset.name !== 'prompt' || !e.clipboardData) return;
      const text = e.clipboardData.getData('text/plain');
      if (!/^\s*"?prompt"?\s*,/i.test(text) || !text.includes('\n')) return;
      e.preventDefault();
      el.csvText.value = text;
      addCSVRows(text);
    });
    el.form.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        // In the CSV box it adds the rows; anywhere else it submits.
        if (e.target === el.csvText) addCSVRows(el.csvText.value); else el.form.requestSubmit();
      }
    });
    el.form.addEventListener('submit', onSubmit);
    for (const b of el.form.querySelectorAll('button[data-upload]')) {
      const refs = $(b.dataset.upload);
      const file = el.form.querySelector('input.file[data-for="' + b.dataset.upload + '"]');
      const status = el.form.querySelector('[data-status-for="' + b.dataset.upload + '"]');
      file.id = b.dataset.upload + '-files';
      file.setAttribute('aria-label', 'Reference image files for every row');
      b.addEventListener('click', () => file.click());
      file.addEventListener('change', () => { uploadFiles(Array.from(file.files), refs, status); file.value = ''; });
    }
    wireDrops();
    wireDialogs();
    el.cancel.addEventListener('click', onCancel);
    el.retry.addEventListener('click', onRetry);
    el.runAgain.addEventListener('click', () => { if (current) runAgain(current.id); });
    el.downloadAll.addEventListener('click', onArchive);
    el.listRefresh.addEventListener('click', () => loadList(false));
    el.listMore.addEventListener('click', () => loadList(true));
    window.addEventListener('hashchange', () => {
      const id = batchInAddress();
      if (id && (!current || current.id !== id)) watchBatch(id, true);
    });
    setInterval(checkStall, 500);

    const draft = stored.get(DRAFT_KEY);
    if (draft && Array.isArray(draft.rows)) applyForm(draft); else addRow();
    update();
    const id = batchInAddress();
    Promise.all([loadModels(), loadBudget(), loadList(false), id ? watchBatch(id, false) : null]).finally(() => { state.ready = true; });
  }

  // A small hook for tests and for debugging from the developer console.
  window.assetgenConsole = {
    get ready() { return state.ready; },
    get batchId() { return current ? current.id : ''; },
    get progressUrl() { return current ? current.progressUrl : ''; },
    get tokenExpiresAt() { return current ? current.tokenExpiresAt : ''; },
    get lastEventId() { return current ? current.lastId : ''; },
    get connections() { return current ? current.conn : 0; },
    get finished() { return !!(current && current.finished); },
    // rowLog lists every row event received, in order: {row, version, status, conn, id}.
    get rowLog() { return current ? current.log.slice() : []; },
    // announced lists what the page told screen readers, in order.
    get announced() { return state.announced.slice(); },
    // lastCopied is the text last put on the clipboard.
    get lastCopied() { return state.lastCopied; },
    // cancellation is the last cancel answer's account.
    get cancellation() { return current ? current.cancellation : null; },
    // stallAfterMs is how long rows may stay unchanged on an open stream
    // before the page says so.
    get stallAfterMs() { return state.stallMs; },
    set stallAfterMs(ms) { state.stallMs = Number(ms) || 60000; },
    // listPageSize is how many batches a page of My batches asks for.
    get listPageSize() { return state.list.limit; },
    set listPageSize(n) { state.list.limit = Math.min(100, Math.max(1, Number(n) || 10)); },
    // closeStream drops the progress stream, as a network failure would; it
    // answers the id of the last event seen.
    closeStream() {
      if (current && current.es) { current.es.close(); current.es = null; setStream('Disconnected.'); }
      return current ? current.lastId : '';
    },
    // reopenStream opens a new stream that resumes after the last event seen.
    reopenStream() {
      if (!current || current.finished) return false;
      if (current.es) current.es.close();
      current.es = null;
      openStream(current.progressUrl, current.lastId);
      return true;
    },
  };

  init();
})();
