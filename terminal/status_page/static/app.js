// Polls /api/status once a second and fills the page. Read-only: no controls here.
"use strict";
const $ = (id) => document.getElementById(id);

function rows(table, pairs) {
  table.replaceChildren(...pairs.map(([key, value, cls]) => {
    const tr = document.createElement("tr");
    const k = document.createElement("td"); k.textContent = key;
    const v = document.createElement("td"); v.textContent = value ?? "–"; if (cls) v.className = cls;
    tr.append(k, v); return tr;
  }));
}

function find(obj, key) {            // first value under `key` anywhere in the status
  if (!obj || typeof obj !== "object") return undefined;
  if (key in obj) return obj[key];
  for (const v of Object.values(obj)) { const f = find(v, key); if (f !== undefined) return f; }
  return undefined;
}

function drawCompass(doa) {
  const svg = $("compass");
  const parts = ['<circle r="70" fill="none" stroke="#c8ccd2" stroke-width="2"/>',
                 '<text y="-56" text-anchor="middle" font-size="12" fill="#666">camera</text>'];
  if (doa && doa.azimuth_deg !== undefined && doa.azimuth_deg !== null) {
    const a = (90 - doa.azimuth_deg) * Math.PI / 180;
    const x = 62 * Math.cos(a), y = -62 * Math.sin(a);
    parts.push(`<line x1="0" y1="0" x2="${x.toFixed(1)}" y2="${y.toFixed(1)}" stroke="#1b7f3b" stroke-width="5" stroke-linecap="round"/>`);
  }
  svg.innerHTML = parts.join("");
}

function render(s) {
  $("state").textContent = s.state;
  $("state").className = "state " + (s.state === "degraded" ? "bad" : s.state === "idle" || s.state === "in_call" ? "ok" : "warn");
  $("reason").textContent = s.reason || "";
  $("notices").textContent = (s.notices || []).slice(-1)[0] || "";
  const lost = s.lost_devices || {};
  rows($("health"), Object.keys(lost).length
    ? Object.entries(lost).map(([k, v]) => [k, v, "bad"])
    : [["devices", "all present", "ok"]]);
  const devices = s.devices || {};
  const media = ["camera", "microphone", "speaker"].map((k) =>
    [k, lost[k] ? `missing: ${lost[k]}` : "present", lost[k] ? "bad" : "ok"]);
  rows($("peripherals"), media.concat(Object.entries(devices).map(([k, v]) =>
    [k, lost[k] ? `missing: ${lost[k]}` : `${v.backend}, working`, lost[k] ? "bad" : "ok"])));
  const call = s.call_session;
  rows($("call"), call ? [
    ["meeting", call.meeting], ["connected", String(call.connected)],
    ["send video / audio", `${call.tx_video_kbps ?? "–"} / ${call.tx_audio_kbps ?? "–"} kbit/s`],
    ["receive video / audio", `${call.rx_video_kbps ?? "–"} / ${call.rx_audio_kbps ?? "–"} kbit/s`],
    ["fps send / receive", `${call.tx_fps ?? "–"} / ${call.rx_fps ?? "–"}`],
    ["round trip", call.rtt_ms != null ? `${call.rtt_ms} ms` : "–"],
    ["loss", call.loss != null ? `${(call.loss * 100).toFixed(1)} %` : "–"],
    ["participants", String(Object.keys(call.participants || {}).length)],
  ] : [["call", "not in a call"], ["meeting", s.meeting || s.meeting_url || "–"]]);
  const doa = find(s, "doa");
  drawCompass(doa);
  $("doa").textContent = doa && doa.azimuth_deg != null
    ? `talker at ${Math.round(doa.azimuth_deg)}° (confidence ${Number(doa.confidence ?? 0).toFixed(2)})` : "no talker direction yet";
  const levels = find(s, "level_dbfs");
  const list = Array.isArray(levels) ? levels : levels != null ? [levels] : [];
  $("levels").replaceChildren(...list.map((db, i) => {
    const wrap = document.createElement("div");
    wrap.textContent = `mic ${i + 1}: ${db ?? "–"} dBFS`;
    const bar = document.createElement("div"); bar.className = "bar";
    const fill = document.createElement("div"); fill.style.width = `${Math.max(0, Math.min(100, 100 + 1.5 * (db ?? -100)))}%`;
    bar.append(fill); wrap.append(bar); return wrap;
  }));
  const b = s.board || {};
  rows($("board"), [["model", b.model], ["serial", b.serial], ["CPU", b.cpu_temp_c != null ? `${b.cpu_temp_c} °C` : "–"],
    ["uptime", s.uptime_s != null ? `${Math.round(s.uptime_s)} s` : "–"],
    ["memory free", b.memory ? `${Math.round(b.memory.available_bytes / 1048576)} MiB` : "–"],
    ["disk free", b.disk ? `${(b.disk.free_bytes / 1073741824).toFixed(1)} GiB` : "–"]]);
  $("updated").textContent = "updated " + new Date().toLocaleTimeString();
}

async function poll() {
  try {
    const r = await fetch("/api/status", {cache: "no-store"});
    if (r.status === 401) { location.reload(); return; }
    render(await r.json());
  } catch (e) { $("updated").textContent = "box not answering"; }
  setTimeout(poll, 1000);
}
poll();
