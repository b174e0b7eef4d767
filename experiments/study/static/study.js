// The participant's page: consent, instructions, one trial at a time from the study's JSON API.
"use strict";
(function () {
  const api = document.body.dataset.api;
  const main = document.getElementById("main");
  let busy = false;
  let current = null;
  let showInstructions = false;

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v; else node.setAttribute(k, v);
    }
    for (const c of children) node.append(c);
    return node;
  }

  async function call(path, body) {
    const init = body === undefined ? {} : {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)};
    const response = await fetch(api + path, init);
    const data = await response.json();
    if (!response.ok) throw new Error(data.error || ("request failed: " + response.status));
    return data;
  }

  function progress(state) {
    document.getElementById("progress-box").hidden = !state.consented;
    const bar = document.getElementById("progress");
    bar.max = state.total;
    bar.value = state.answered;
    document.getElementById("progress-text").textContent = state.answered + " / " + state.total;
  }

  function instructionList(state) {
    return el("ol", {id: "instructions"}, ...state.instructions.map((line) => el("li", {text: line})));
  }

  function renderConsent(state) {
    const agree = el("button", {id: "agree", type: "button", text: "I agree and want to take part"});
    agree.addEventListener("click", async () => {
      if (busy) return;
      busy = true;
      try { showInstructions = true; render(await call("/consent", {agree: true})); } finally { busy = false; }
    });
    main.replaceChildren(el("h2", {text: "Consent"}), el("p", {id: "consent", text: state.consent}), agree);
  }

  function renderInstructions(state) {
    const start = el("button", {id: "start", type: "button", text: "Start"});
    start.addEventListener("click", () => { showInstructions = false; render(state); });
    main.replaceChildren(el("h2", {text: "Instructions"}), instructionList(state), start);
  }

  function renderDone(state) {
    main.replaceChildren(el("h2", {text: "Thank you!"}),
      el("p", {text: "You have answered every page. Your completion code:"}),
      el("p", {id: "completion-code", class: "code", text: state.completion_code}));
  }

  function renderTrial(state) {
    const trial = state.trial;
    const videos = el("div", {class: "videos"});
    const labels = ["A", "B"];
    trial.videos.forEach((url, i) => {
      const box = el("figure", {});
      if (trial.type === "choice") box.append(el("figcaption", {text: "Video " + labels[i]}));
      box.append(el("video", {src: url, controls: "", preload: "auto", playsinline: ""}));
      videos.append(box);
    });
    const parts = [el("h2", {id: "question", text: trial.question})];
    if (trial.reference) parts.push(el("figure", {class: "reference"}, el("figcaption", {text: "Reference picture"}),
                                       el("img", {src: trial.reference, alt: "reference picture"})));
    parts.push(videos);
    const buttons = el("div", {class: "answers"});
    if (trial.type === "choice") {
      labels.forEach((label, i) => {
        const b = el("button", {type: "button", id: "choose-" + label, "data-choice": String(i), text: label});
        b.addEventListener("click", () => answer({trial: trial.trial, choice: i}));
        buttons.append(b);
      });
    } else {
      for (let r = 1; r <= 5; r++) {
        const b = el("button", {type: "button", id: "rate-" + r, "data-rating": String(r), text: trial.scale[r - 1]});
        b.addEventListener("click", () => answer({trial: trial.trial, rating: r}));
        buttons.append(b);
      }
    }
    parts.push(buttons, el("p", {class: "hint", text: trial.type === "choice"
      ? "Keys: A or \u2190 for video A, B or \u2192 for video B." : "Keys: 1 to 5."}),
      el("p", {id: "message", class: "message"}),
      el("details", {}, el("summary", {text: "Instructions"}), instructionList(state)));
    main.replaceChildren(...parts);
  }

  async function answer(body) {
    if (busy) return;
    busy = true;
    main.querySelectorAll(".answers button").forEach((b) => { b.disabled = true; });
    try {
      const result = await call("/answers", body);
      render(result.state);
    } catch (error) {
      const message = document.getElementById("message");
      if (message) message.textContent = error.message;
      main.querySelectorAll(".answers button").forEach((b) => { b.disabled = false; });
    } finally {
      busy = false;
    }
  }

  function render(state) {
    current = state;
    progress(state);
    if (!state.consented) renderConsent(state);
    else if (state.trial === null) renderDone(state);
    else if (showInstructions) renderInstructions(state);
    else renderTrial(state);
  }

  document.addEventListener("keydown", (event) => {
    if (!current || !current.trial || showInstructions || event.ctrlKey || event.metaKey || event.altKey) return;
    const trial = current.trial;
    const key = event.key.toLowerCase();
    if (trial.type === "choice") {
      if (key === "a" || key === "arrowleft") answer({trial: trial.trial, choice: 0});
      else if (key === "b" || key === "arrowright") answer({trial: trial.trial, choice: 1});
    } else if (["1", "2", "3", "4", "5"].includes(key)) {
      answer({trial: trial.trial, rating: Number(key)});
    }
  });

  call("/state").then(render).catch((error) => {
    main.replaceChildren(el("p", {class: "message", text: error.message}));
  });
})();
