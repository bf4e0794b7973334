"use strict";
// The empg-gym episode viewer. Every text from envs and models goes into the page with textContent, never as HTML.
(function () {
  const PAGE_SIZE = 50;
  const data = JSON.parse(document.getElementById("episode-data").textContent);
  const S = data.strings;
  const F = {};
  data.fields.forEach((name, i) => { F[name] = i; });
  const runs = data.runs;
  const episodes = data.episodes;
  const $ = (id) => document.getElementById(id);
  let page = 0;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v;
      else if (k === "className") node.className = v;
      else node.setAttribute(k, v);
    }
    for (const c of children) if (c !== null && c !== undefined) node.appendChild(c);
    return node;
  }

  function distinct(values, numeric) {
    const out = Array.from(new Set(values.filter((v) => v !== null && v !== undefined)));
    return numeric ? out.sort((a, b) => a - b) : out.sort();
  }

  function fillSelect(select, options, keepValue) {
    const old = select.value;
    select.textContent = "";
    for (const [value, text] of options) select.appendChild(el("option", { value: String(value), text: text }));
    if (keepValue && options.some(([v]) => String(v) === old)) select.value = old;
  }

  const algos = distinct(runs.map((r) => r.algo));
  const all = [["", "all"]];
  fillSelect($("f-env"), all.concat(distinct(runs.map((r) => r.env)).map((v) => [v, v])));
  fillSelect($("f-algo"), all.concat(algos.map((v) => [v, v])));
  fillSelect($("f-seed"), all.concat(distinct(runs.map((r) => r.seed), true).map((v) => [v, String(v)])));
  fillSelect($("f-kind"), [["", "all"], ["eval", "evaluations"], ["train", "training rollouts"]]);
  fillSelect($("f-split"), all.concat(distinct(episodes.map((e) => e.split)).map((v) => [v, v])));
  fillSelect($("f-type"), all.concat(distinct(episodes.flatMap((e) => e.types)).map((v) => [v, v])));
  fillSelect($("f-outcome"), [["", "all"], ["won", "won"], ["failed", "failed"]]);
  fillSelect($("f-update"), all.concat(distinct(episodes.map((e) => e.update), true).map((v) => [v, "update " + v])));
  fillSelect($("f-colour"), [["advantage", "advantage"], ["g", "EMPG g"], ["f", "EMPG f"], ["H", "step entropy H"],
                             ["none", "nothing"]]);
  fillSelect($("f-side-a"), algos.map((v) => [v, v]));
  fillSelect($("f-side-b"), algos.map((v) => [v, v]));
  if (algos.length > 1) $("f-side-b").value = algos[1];

  // colour scales: the largest magnitude over all logged steps (|A|, |log g|, f, H), computed when the page was written
  const scale = data.scale;
  // each run's steps: one JSON block, parsed when one of its episodes is first opened
  const chunks = new Map();
  function stepsOf(e) {
    if (!chunks.has(e.run)) chunks.set(e.run, JSON.parse(document.getElementById("steps-" + e.run).textContent));
    return chunks.get(e.run)[e.pos];
  }

  function stepColour(st, mode) {
    if (mode === "none") return "";
    let v = st[F[mode]];
    if (typeof v !== "number" || !scale[mode] || (mode !== "g" && v === 0)) return "";
    if (mode === "g") v = v > 0 ? Math.log(v) : 0;
    const a = (0.08 + 0.5 * Math.min(1, Math.abs(v) / scale[mode])).toFixed(3);
    if (mode === "advantage") return v >= 0 ? `rgba(46,125,50,${a})` : `rgba(198,40,40,${a})`;
    if (mode === "g") return v >= 0 ? `rgba(21,101,192,${a})` : `rgba(239,108,0,${a})`;
    return `rgba(106,27,154,${a})`;
  }

  const LEGEND = {
    advantage: "Row colour: the step's final advantage (green > 0, red < 0; darker = larger |A|).",
    g: "Row colour: EMPG's g (blue: confident step, g > 1, update amplified; orange: uncertain, g < 1, damped).",
    f: "Row colour: EMPG's future-clarity f (darker = the next step is more confident).",
    H: "Row colour: step entropy H (darker = less confident).",
    none: "",
  };

  function filters() {
    return {
      env: $("f-env").value, algo: $("f-algo").value, seed: $("f-seed").value, kind: $("f-kind").value,
      split: $("f-split").value, type: $("f-type").value, outcome: $("f-outcome").value,
      update: $("f-update").value, task: $("f-task").value.trim().toLowerCase(),
      side: $("f-side").checked, a: $("f-side-a").value, b: $("f-side-b").value,
    };
  }

  function matches(e, f, ignoreAlgo) {
    const r = runs[e.run];
    return (!f.env || r.env === f.env) && (ignoreAlgo || !f.algo || r.algo === f.algo) &&
      (!f.seed || String(r.seed) === f.seed) && (!f.kind || e.kind === f.kind) && (!f.split || e.split === f.split) &&
      (!f.type || e.types.indexOf(f.type) >= 0) && (!f.outcome || (f.outcome === "won") === e.won) &&
      (!f.update || String(e.update) === f.update) && (!f.task || e.task.toLowerCase().indexOf(f.task) >= 0);
  }

  function fmt(v) {
    return typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(3)) : "–";
  }

  function stepsTable(e, mode) {
    const cols = el("colgroup", {}, el("col", { className: "c-i" }), el("col"), el("col"), el("col"),
      el("col", { className: "c-flag" }), ...["reward", "H", "g", "f", "advantage"].map(() => el("col", { className: "c-num" })));
    const head = el("tr", {}, ...["#", "observation", "response", "action", "valid", "reward", "H", "g", "f", "A"]
      .map((t) => el("th", { text: t })));
    const body = el("tbody");
    stepsOf(e).forEach((st, i) => {
      const valid = st[F.format_valid] === 0 ? "bad format" : (st[F.action_valid] === 0 ? "invalid" : "✓");
      const row = el("tr", {},
        el("td", { className: "num", text: String(i + 1) }),
        el("td", { className: "text", text: S[st[F.observation]] }),
        el("td", { className: "text", text: S[st[F.response]] }),
        el("td", { className: "text", text: S[st[F.action]] }),
        el("td", { className: valid === "✓" ? "" : "invalid", text: valid }),
        ...["reward", "H", "g", "f", "advantage"].map((k) => el("td", {
          className: "num", text: fmt(st[F[k]]), title: k + " = " + String(st[F[k]]) })));
      row.style.background = stepColour(st, mode);
      body.appendChild(row);
    });
    return el("table", { className: "steps" }, cols, el("thead", {}, head), body);
  }

  function episodeNode(e, mode, open) {
    const r = runs[e.run];
    const tags = [r.algo, "seed " + r.seed, e.kind === "train" ? "training rollout" : "eval " + e.mode, e.split,
      e.update === null || e.update === undefined ? "" : "update " + e.update].concat(e.types).filter((t) => t);
    const summary = el("summary", {},
      ...tags.map((t) => el("span", { className: "tag", text: t })),
      el("span", { className: "tag " + (e.won ? "won" : "failed"), text: e.won ? "won" : "failed" }),
      el("span", { text: (typeof e.score === "number" ? `score ${fmt(e.score)}, ` : "") +
        `${e.length} steps, task ${e.task}` + (e.group !== null &&
        e.group !== undefined ? `, group ${e.group}` : "") }),
      el("span", { className: "goal", text: S[e.goal] }));
    const node = el("details", { className: "ep " + (e.won ? "won" : "failed") }, summary);
    node.dataset.kind = e.kind;
    let rendered = false;
    const render = () => {
      if (node.open && !rendered) { rendered = true; node.appendChild(stepsTable(e, mode)); }
    };
    node.addEventListener("toggle", render);
    if (open) { node.open = true; render(); }
    return node;
  }

  function pairKey(e) {
    const r = runs[e.run];
    return [r.env, r.seed, e.kind, e.split, e.update, e.task, e.kind === "train" ? e.group : ""].join("\u0001");
  }

  function render() {
    const f = filters();
    const mode = $("f-colour").value;
    $("legend").textContent = LEGEND[mode];
    $("f-algo").disabled = f.side;
    const list = $("list");
    list.textContent = "";
    let items;
    if (f.side) {
      const left = new Map();
      const right = new Map();
      for (const e of episodes) {
        if (!matches(e, f, true)) continue;
        const algo = runs[e.run].algo;
        for (const [side, name] of [[left, f.a], [right, f.b]]) {
          if (algo !== name) continue;
          const k = pairKey(e);
          if (!side.has(k)) side.set(k, []);
          side.get(k).push(e);
        }
      }
      items = Array.from(left.keys()).filter((k) => right.has(k)).map((k) => [left.get(k), right.get(k)]);
    } else {
      items = episodes.filter((e) => matches(e, f, false));
    }
    const pages = Math.max(1, Math.ceil(items.length / PAGE_SIZE));
    page = Math.min(page, pages - 1);
    const shown = items.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE);
    $("page").textContent = `page ${page + 1} of ${pages} (${items.length} ${f.side ? "pairs" : "episodes"})`;
    $("prev").disabled = page === 0;
    $("next").disabled = page >= pages - 1;
    if (!shown.length) {
      list.appendChild(el("p", { className: "empty", text: f.side
        ? "No task played by both algorithms under these filters." : "No episode matches these filters." }));
    }
    shown.forEach((item, i) => {
      if (f.side) {
        const cols = item.map((eps, j) => el("div", {}, el("h3", { text: j ? f.b : f.a }),
          ...eps.map((e) => episodeNode(e, mode, i === 0))));
        list.appendChild(el("div", { className: "pairs" }, ...cols));
      } else {
        list.appendChild(episodeNode(item, mode, i === 0));
      }
    });
  }

  const nEval = episodes.filter((e) => e.kind === "eval").length;
  $("title").textContent = "empg-gym episodes: " + data.source;
  $("summary").textContent = `${episodes.length} episodes from ${runs.length} run(s): ${nEval} evaluated, ` +
    `${episodes.length - nEval} sampled training rollouts (H, g, f, advantage per step).` +
    (data.omitted ? ` ${data.omitted} more were left out to keep this page small (at most ${data.per_run} per ` +
      "run: its last evaluation first, then its training rollouts, then earlier evaluations); " +
      "`empg-gym view RUN_FOLDER` shows every episode of one run." : "");
  for (const id of ["f-env", "f-algo", "f-seed", "f-kind", "f-split", "f-type", "f-outcome", "f-update", "f-colour",
                    "f-side", "f-side-a", "f-side-b"]) {
    $(id).addEventListener("change", () => { page = 0; render(); });
  }
  $("f-task").addEventListener("input", () => { page = 0; render(); });
  $("prev").addEventListener("click", () => { page = Math.max(0, page - 1); render(); });
  $("next").addEventListener("click", () => { page += 1; render(); });
  render();
  document.body.dataset.readyMs = String(Math.round(performance.now()));
  document.body.dataset.ready = "1";
})();
