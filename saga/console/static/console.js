// The console's only script: draws the Mermaid diagrams and keeps lists fresh.
// Every page is complete without it (diagrams then show as their Mermaid source).
"use strict";

function drawDiagrams() {
  if (!window.mermaid || !document.querySelector("pre.mermaid")) return;
  window.mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "neutral" });
  window.mermaid.run({ querySelector: "pre.mermaid" }).then(() => {
    document.body.dataset.diagrams = "drawn";
  }, (error) => {
    document.body.dataset.diagrams = "failed";
    console.error("mermaid", error);
  });
}

function loadMermaid() {
  if (!document.querySelector("pre.mermaid")) return;
  const script = document.createElement("script");
  script.src = "/console/static/mermaid.min.js";
  script.onload = drawDiagrams;
  document.head.appendChild(script);
}

// Live refresh: every few seconds, fetch this same page and swap in its #results.
function liveRefresh() {
  const live = document.getElementById("live");
  if (!live || !document.querySelector("[data-live]")) return;
  setInterval(async () => {
    if (!live.checked || document.hidden) return;
    try {
      const response = await fetch(location.href, { credentials: "same-origin" });
      if (!response.ok) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      const next = fresh.getElementById("results");
      const current = document.getElementById("results");
      if (next && current && next.innerHTML !== current.innerHTML) {
        current.innerHTML = next.innerHTML;
      }
      document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
    } catch (error) {
      console.warn("refresh failed", error);
    }
  }, 3000);
}

document.addEventListener("DOMContentLoaded", () => {
  loadMermaid();
  liveRefresh();
});
