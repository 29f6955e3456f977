"use strict";
const COLOURS = { public: "#1b7f3b", internal: "#1f5fa8", confidential: "#b26b00", secret: "#b3261e", top_secret: "#6a1b9a" };
const LABELS = { public: "Công khai", internal: "Nội bộ", confidential: "Mật", secret: "Tối mật", top_secret: "Tuyệt mật" };
const $ = (id) => document.getElementById(id);
$("key").value = sessionStorage.getItem("kms-key") || "";

$("signin").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("kms-key", $("key").value.trim());
  $("status").textContent = "Đã lưu khóa.";
});

function highlighted(snippet, ranges) {
  const frag = document.createDocumentFragment();
  let pos = 0;
  for (const [start, end] of ranges) {
    frag.append(snippet.slice(pos, start));
    const mark = document.createElement("mark");
    mark.textContent = snippet.slice(start, end);
    frag.append(mark);
    pos = end;
  }
  frag.append(snippet.slice(pos));
  return frag;
}

function renderHit(hit) {
  const li = document.createElement("li");
  const title = document.createElement("h2");
  title.style.fontSize = "1.1rem";
  title.textContent = hit.title || hit.doc_id;
  const meta = document.createElement("div");
  meta.className = "meta";
  const badge = document.createElement("span");
  badge.className = "badge";
  badge.style.background = COLOURS[hit.classification] || "#555";
  badge.textContent = LABELS[hit.classification] || hit.classification || "?";
  meta.append(badge, " ", [hit.doc_number, hit.issuer, hit.issued_date, hit.owner_unit].filter(Boolean).join(" · "));
  const snippet = document.createElement("p");
  snippet.append(highlighted(hit.snippet, hit.highlights));
  li.append(title, meta, snippet);
  return li;
}

$("search").addEventListener("submit", async (e) => {
  e.preventDefault();
  $("status").textContent = "Đang tìm…";
  const response = await fetch("/api/v1/search", {
    method: "POST",
    headers: { "content-type": "application/json", authorization: "Bearer " + (sessionStorage.getItem("kms-key") || "") },
    body: JSON.stringify({ query: $("q").value, mode: $("mode").value }),
  });
  const list = $("results");
  list.replaceChildren();
  if (!response.ok) {
    $("status").textContent = response.status === 401 ? "Cần đăng nhập bằng khóa API." : "Lỗi: " + response.status;
    return;
  }
  const data = await response.json();
  $("status").textContent = data.total + " tài liệu";
  data.results.forEach((hit) => list.append(renderHit(hit)));
});
