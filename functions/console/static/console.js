// assetgen batch console: submit a batch, watch its images arrive.
// Plain JavaScript, no dependencies, no build step. All text from the API is
// written with textContent, never as HTML.
'use strict';

(function () {
  const cfg = window.assetgenConfig || {};
  const apiBase = String(cfg.apiBase || '').replace(/\/+$/, '');
  const MAX_ROWS = 10;
  const TOKEN_KEY = 'assetgen.token';
  const FINAL = new Set(['done', 'failed', 'cancelled']);
  // What to tell the user about a code (docs/errors.md).
  const HINTS = {
    MODEL_SAFETY_BLOCKED: 'The model refused the prompt or its output. Rephrase the prompt.',
    MODEL_FAILED: 'The model failed or answered without an image. Retry the row in a new batch if it persists.',
    MODEL_RATE_LIMIT: 'The model is rate limited; the row retries by itself.',
    REF_FETCH_FAILED: 'A reference image could not be fetched.',
    REF_TOO_LARGE: 'A reference image is too large.',
    REF_NOT_IMAGE: 'A reference is not a PNG, JPEG, WebP or GIF.',
    UNAUTHENTICATED: 'Sign in again: paste a fresh bearer token.',
    BUDGET_EXCEEDED: 'Shrink the batch or wait for the next UTC day.',
    RATE_LIMITED: 'Too many submits; wait a moment.',
    FEATURE_DISABLED: 'This feature is switched off for you or on this deployment.',
  };

  const $ = (id) => document.getElementById(id);
  const el = {
    form: $('batch-form'), problem: $('problem'), model: $('model'), modelHint: $('model-hint'),
    dry: $('run-dry'), live: $('run-live'), liveHint: $('live-hint'),
    confirmField: $('confirm-field'), confirm: $('confirm'), globalRefs: $('global-refs'), refsHint: $('refs-hint'),
    token: $('token'), tokenClear: $('token-clear'), rows: $('rows'), rowCount: $('row-count'), addRow: $('add-row'),
    estimate: $('estimate'), budget: $('budget'), budgetWarning: $('budget-warning'),
    submit: $('submit'), submitHint: $('submit-hint'), apiNote: $('api-note'),
    batch: $('batch'), batchTitle: $('batch-title'), batchId: $('batch-id'), cancel: $('cancel'),
    totals: $('totals'), streamState: $('stream-state'), grid: $('grid'), summary: $('summary'),
    summaryText: $('summary-text'), links: $('links'), rowTemplate: $('row-template'),
  };

  const state = { models: null, budget: null, rowSeq: 0, submitting: false, ready: false };
  // The batch being watched: see startBatch.
  let current = null;

  // ---- formatting -------------------------------------------------------

  const usd = new Intl.NumberFormat('en-US', { style: 'currency', currency: 'USD', minimumFractionDigits: 2, maximumFractionDigits: 3 });
  const money = (n) => usd.format(Number(n) || 0);
  const plural = (n, one, many) => n + ' ' + (n === 1 ? one : many);
  // setText changes text only when it differs, so live regions announce
  // changes, not keystrokes.
  const setText = (e, s) => { if (e.textContent !== s) e.textContent = s; };

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

  async function api(method, path, body) {
    const headers = { Accept: 'application/json, application/problem+json' };
    const t = token();
    if (t) headers.Authorization = 'Bearer ' + t;
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
      throw new ProblemError(resp.status, doc);
    }
    return doc;
  }

  // renderProblem fills box with a problem document: title, code, detail,
  // every errors[] entry, and the request id to quote.
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
        const li = h('li', {}, h('span', { class: 'field-name', text: fieldLabel(fe.field) }), ' ', h('code', { text: fe.code || '' }));
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
    const m = /^\/rows\/(\d+)(?:\/(\w+))?/.exec(ptr || '');
    if (m) return 'Row ' + (Number(m[1]) + 1) + (m[2] ? ' · ' + m[2] : '');
    const names = { '/refs': 'Reference images', '/model': 'Model', '/runMode': 'Run mode', '/confirm': 'Confirmation', '/rows': 'Rows' };
    return names[(ptr || '').replace(/\/\d+$/, '')] || ptr || 'request';
  }

  // fieldFor finds the input a JSON pointer names, to mark it invalid.
  function fieldFor(ptr) {
    const m = /^\/rows\/(\d+)\/(\w+)/.exec(ptr || '');
    if (m) {
      const li = rowItems()[Number(m[1])];
      return li ? field(li, m[2]) : null;
    }
    if (/^\/refs/.test(ptr)) return el.globalRefs;
    if (ptr === '/model') return el.model;
    if (ptr === '/confirm') return el.confirm;
    return null;
  }

  function clearProblem() {
    el.problem.hidden = true;
    el.problem.replaceChildren();
    for (const e of el.form.querySelectorAll('[aria-invalid]')) e.removeAttribute('aria-invalid');
  }

  function showProblem(err) {
    renderProblem(el.problem, err);
    const errs = (err instanceof ProblemError && Array.isArray(err.doc.errors)) ? err.doc.errors : [];
    for (const fe of errs) {
      const f = fieldFor(fe.field);
      if (f) f.setAttribute('aria-invalid', 'true');
    }
    el.problem.focus();
  }

  function fillAspect(select) {
    const m = selectedModel();
    const keep = select.value;
    const ratios = (m && m.aspectRatios) || [];
    select.replaceChildren(h('option', { value: '', text: ratios.length ? 'Model default (' + ratios[0] + ')' : 'Model default' }));
    for (const r of ratios) select.append(h('option', { value: r, text: r }));
    select.value = ratios.includes(keep) ? keep : '';
  }

  function addRow() {
    if (rowItems().length >= MAX_ROWS) return null;
    const li = el.rowTemplate.content.firstElementChild.cloneNode(true);
    const key = state.rowSeq++;
    for (const f of li.querySelectorAll('[data-name]')) {
      f.id = 'row-' + key + '-' + f.dataset.name;
      f.name = f.id;
    }
    for (const l of li.querySelectorAll('label[data-for]')) l.htmlFor = 'row-' + key + '-' + l.dataset.for;
    fillAspect(field(li, 'aspectRatio'));
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

  function collect() {
    const rows = rowItems().map((li) => {
      const row = { prompt: field(li, 'prompt').value.trim(), variants: Number(field(li, 'variants').value) || 1 };
      const refs = parseRefs(field(li, 'refs').value);
      if (refs.length) row.refs = refs;
      const ar = field(li, 'aspectRatio').value;
      if (ar) row.aspectRatio = ar;
      return row;
    });
    const body = { runMode: isLive() ? 'live' : 'dry_run', rows };
    if (el.model.value) body.model = el.model.value;
    const refs = parseRefs(el.globalRefs.value);
    if (refs.length) body.refs = refs;
    if (isLive()) body.confirm = el.confirm.value;
    return body;
  }

  // update recomputes everything that follows the form: the estimate, the
  // budget warning and whether the submit button is enabled.
  function update() {
    const live = isLive();
    el.confirmField.hidden = !live;
    const body = collect();
    const images = body.rows.reduce((n, r) => n + r.variants, 0);
    const m = selectedModel();
    if (m) {
      const cost = images * m.priceUsd;
      setText(el.estimate, 'Estimate: ' + plural(images, 'image', 'images') + ' × ' + money(m.priceUsd) + ' = ' + money(cost) +
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
    el.submit.disabled = state.submitting || !m || (live && !confirmed);
    setText(el.submitHint, state.submitting ? 'Submitting…'
      : !m ? 'Waiting for the model list.'
        : live && !confirmed ? 'Type CONFIRM above to enable a live run.' : '');
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
      el.model.value = ms.default;
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
      el.modelHint.textContent = money(m.priceUsd) + ' per image · up to ' + plural(m.maxRefs, 'reference image', 'reference images') + ' per row.';
      el.refsHint.textContent = 'Image URLs (https or gs), separated by commas or new lines; used before each row\u2019s own.';
    }
    for (const li of rowItems()) fillAspect(field(li, 'aspectRatio'));
    update();
  }

  async function onSubmit(ev) {
    ev.preventDefault();
    update();
    if (el.submit.disabled) return;
    clearProblem();
    const body = collect();
    state.submitting = true;
    update();
    try {
      const res = await api('POST', '/batch/images', body);
      if (body.runMode === 'live') {
        el.confirm.value = ''; // every live run is confirmed anew
        if (res.budget) { state.budget = res.budget; renderBudget(); }
      }
      startBatch(res, body);
    } catch (err) {
      showProblem(err);
    } finally {
      state.submitting = false;
      update();
    }
  }

  // ---- the batch view ---------------------------------------------------

  // startBatch shows a batch and follows its progress stream. initial is its
  // state when it is known already (a batch reopened from the address).
  function startBatch(res, body, initial) {
    stopWatching();
    current = {
      id: res.batchId, progressUrl: res.progressUrl, tokenExpiresAt: res.progressTokenExpiresAt || '', runMode: body.runMode,
      rows: body.rows.map((r, i) => ({ index: i, prompt: r.prompt, variants: r.variants, version: -1, status: 'queued', tr: null, cells: [] })),
      es: null, lastId: '', conn: 0, failures: 0, recovering: false, finished: false, log: [],
    };
    el.batchId.textContent = 'Batch ' + res.batchId + ' · ' + (body.runMode === 'live' ? 'live' : 'dry run') + ' · ' +
      plural(res.estimate.images, 'image', 'images') + ' on ' + res.estimate.model;
    el.summary.hidden = true;
    el.links.replaceChildren();
    el.cancel.disabled = false;
    el.cancel.textContent = 'Cancel batch';
    clearBatchProblem();
    buildGrid(res);
    renderTotals({ status: res.status, rowCounts: {}, variantCounts: { queued: res.estimate.images }, costUsd: 0 });
    if (initial) {
      for (const row of initial.rows || []) applyRow(current, row);
      renderTotals(initial);
    }
    el.batch.hidden = false;
    // The address names the batch, so a reload comes back to it.
    history.replaceState(null, '', '#batch=' + encodeURIComponent(res.batchId));
    if (!initial) el.batchTitle.focus();
    openStream(res.progressUrl, '');
  }

  // watchBatch reopens a batch named in the address (#batch=<id>): its state,
  // then its stream — which answers 204 when the batch is finished.
  async function watchBatch(id) {
    try {
      const b = await api('GET', '/batch/' + encodeURIComponent(id));
      const t = await api('GET', '/batch/' + encodeURIComponent(id) + '/progress-token');
      const images = (b.rows || []).reduce((n, r) => n + (r.variants || []).length, 0);
      startBatch({ batchId: b.batchId, progressUrl: t.progressUrl, progressTokenExpiresAt: t.expiresAt, status: b.status, estimate: { images, model: b.model }, rows: [] },
        { runMode: b.runMode, rows: (b.rows || []).map((r) => ({ prompt: r.prompt, variants: (r.variants || []).length })) }, b);
    } catch (err) {
      showProblem(err);
    }
  }

  function batchInAddress() {
    const m = /^#batch=([\w-]{1,64})$/.exec(location.hash);
    return m ? m[1] : '';
  }

  function buildGrid(res) {
    const cols = Math.max(...current.rows.map((r) => r.variants));
    const head = h('tr', {}, h('th', { scope: 'col', text: 'Row' }));
    for (let v = 0; v < cols; v++) head.append(h('th', { scope: 'col', text: 'Variant ' + (v + 1) }));
    el.grid.tHead.replaceChildren(head);
    const body = el.grid.tBodies[0];
    body.replaceChildren();
    const dropped = new Map((res.rows || []).map((r) => [r.index, r.droppedRefs || []]));
    for (const r of current.rows) {
      const th = h('th', { scope: 'row', class: 'row-head' },
        h('span', { class: 'row-num', text: 'Row ' + (r.index + 1) }), ' ',
        h('span', { class: 'badge', 'data-status': 'queued', text: 'queued' }),
        h('p', { class: 'prompt', text: r.prompt }),
        h('p', { class: 'row-error', hidden: true }));
      for (const d of dropped.get(r.index) || []) th.append(h('p', { class: 'muted', text: 'Reference dropped: ' + d.url + ' (' + d.reason + ')' }));
      const tr = h('tr', { 'data-row': String(r.index) }, th);
      for (let v = 0; v < cols; v++) {
        if (v < r.variants) {
          const cell = h('div', { class: 'cell', 'data-row': String(r.index), 'data-variant': String(v) });
          r.cells.push(cell);
          renderCell(r, v, { index: v, status: 'queued' });
          tr.append(h('td', {}, cell));
        } else {
          tr.append(h('td', { class: 'empty' }, h('span', { class: 'visually-hidden', text: 'No variant' })));
        }
      }
      r.tr = tr;
      body.append(tr);
    }
  }

  const STATUS_TEXT = { queued: 'Queued', running: 'Generating…', done: 'Done', failed: 'Failed', cancelled: 'Cancelled' };

  function renderCell(r, v, variant) {
    const cell = r.cells[v];
    if (!cell) return;
    const status = variant.status || 'queued';
    const url = status === 'done' ? variant.url || '' : '';
    if (cell.dataset.status === status && (cell.dataset.url || '') === url) return;
    cell.dataset.status = status;
    cell.dataset.url = url;
    const label = r.prompt + ' — variant ' + (v + 1);
    if (status === 'done' && url) {
      const img = cell.querySelector('img');
      if (img) { // a fresh signed URL for the same image
        img.src = url;
        img.parentElement.href = url;
        return;
      }
      const im = h('img', { src: url, alt: label, decoding: 'async', width: '160', height: '160' });
      im.addEventListener('error', () => onImageError(cell));
      cell.replaceChildren(h('a', { href: url, target: '_blank', rel: 'noopener noreferrer', title: 'Open ' + label }, im));
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
    if (!r || row.version < r.version) return;
    r.version = row.version;
    r.status = row.status;
    const badge = r.tr.querySelector('.row-head .badge');
    badge.dataset.status = row.status;
    badge.textContent = row.status;
    // A row error its variants already show is not repeated.
    const shown = row.error && (row.variants || []).some((v) => v.error && v.error.code === row.error.code);
    const err = r.tr.querySelector('.row-error');
    err.hidden = !row.error || shown;
    err.textContent = row.error && !shown ? row.error.code + ': ' + (row.error.message || '') : '';
    for (const v of row.variants || []) renderCell(r, v.index, v);
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
  }

  function cap(s) { return s.charAt(0).toUpperCase() + s.slice(1); }

  // ---- the progress stream ---------------------------------------------

  function setStream(text) { el.streamState.textContent = text; }

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
      setStream('Connected to the progress stream.');
    });
    es.addEventListener('row', (e) => {
      if (!mine()) return;
      seen(e);
      const row = JSON.parse(e.data);
      c.log.push({ row: row.index, version: row.version, status: row.status, conn, id: e.lastEventId });
      applyRow(c, row);
    });
    es.addEventListener('batch', (e) => {
      if (!mine()) return;
      seen(e);
      renderTotals(JSON.parse(e.data));
    });
    es.addEventListener('done', (e) => {
      if (!mine()) return;
      seen(e);
      renderTotals(JSON.parse(e.data));
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

  function stopWatching() {
    if (current && current.es) current.es.close();
    if (current) current.es = null;
    current = null;
  }

  const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

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
          c.tokenExpiresAt = t.expiresAt;
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

  // loadState renders GET /batch/{id}: fresh URLs, and stable links.
  async function loadState(c) {
    const b = await api('GET', '/batch/' + encodeURIComponent(c.id));
    if (current === c) {
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
    el.cancel.disabled = true;
    setStream('The batch is finished.');
    if (c.runMode === 'live') settleBudget();
    try {
      const b = final || await loadState(c);
      if (current === c) renderSummary(c, b);
    } catch (err) {
      if (current === c) showBatchProblem(err);
    }
  }

  function renderSummary(c, b) {
    const vc = b.variantCounts || {};
    let s = cap(b.status) + ': ' + plural(vc.done || 0, 'image', 'images') + ' made';
    if (vc.failed) s += ', ' + vc.failed + ' failed';
    if (vc.cancelled) s += ', ' + vc.cancelled + ' cancelled';
    s += '. Cost ' + money(b.costUsd) + (c.runMode === 'live' ? '.' : ' (dry run, not charged).');
    el.summaryText.textContent = s + ' These links keep working for as long as the images are kept:';
    el.links.replaceChildren();
    for (const row of b.rows || []) {
      for (const v of row.variants || []) {
        if (!v.link) continue;
        const label = 'Row ' + (row.index + 1) + ', variant ' + (v.index + 1) + ': ' + row.prompt;
        el.links.append(h('li', {}, h('a', { href: resolve(v.link), target: '_blank', rel: 'noopener noreferrer', text: label })));
      }
    }
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

  async function onCancel() {
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
      // The stream sends done once the running rows stop; without a stream, finish here.
      if (FINAL.has(b.status) && !c.es) finish(c, b);
    } catch (err) {
      if (current !== c) return;
      showBatchProblem(err);
      el.cancel.disabled = false;
      el.cancel.textContent = 'Cancel batch';
    }
  }

  // ---- start ------------------------------------------------------------

  function init() {
    el.apiNote.textContent = 'API: ' + (apiBase || 'this site');
    try { el.token.value = sessionStorage.getItem(TOKEN_KEY) || ''; } catch (_) { /* storage disabled */ }
    el.token.addEventListener('change', () => {
      try {
        if (token()) sessionStorage.setItem(TOKEN_KEY, token()); else sessionStorage.removeItem(TOKEN_KEY);
      } catch (_) { /* storage disabled */ }
      loadBudget();
    });
    el.tokenClear.addEventListener('click', () => {
      el.token.value = '';
      try { sessionStorage.removeItem(TOKEN_KEY); } catch (_) { /* storage disabled */ }
      el.token.focus();
      loadBudget();
    });
    el.addRow.addEventListener('click', () => {
      const li = addRow();
      if (li) field(li, 'prompt').focus();
    });
    el.model.addEventListener('change', onModelChange);
    el.form.addEventListener('input', update);
    el.form.addEventListener('change', update);
    el.form.addEventListener('submit', onSubmit);
    el.cancel.addEventListener('click', onCancel);
    addRow();
    update();
    const id = batchInAddress();
    Promise.all([loadModels(), loadBudget(), id ? watchBatch(id) : null]).finally(() => { state.ready = true; });
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
