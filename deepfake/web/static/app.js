// Progressive enhancement only: drag-and-drop and a preview. The form posts the same way without it.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("upload");
  const input = document.getElementById("file");
  const drop = form && form.querySelector(".drop");
  const preview = document.getElementById("preview");
  if (!form || !input || !drop || !preview) return;

  let previewUrl = null;
  const showPreview = () => {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    const file = input.files && input.files[0];
    previewUrl = file ? URL.createObjectURL(file) : null;
    preview.hidden = !previewUrl;
    if (previewUrl) {
      preview.src = previewUrl;
      preview.alt = "preview of " + file.name;
      drop.querySelector(".drop-text").textContent =
        input.files.length > 1 ? input.files.length + " images chosen" : file.name;
    }
  };
  input.addEventListener("change", showPreview);

  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (event) => {
      event.preventDefault();
      drop.classList.add("dragging");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("dragging"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      showPreview();
    }
  });

  const button = form.querySelector("button[type=submit]");
  const label = button ? button.textContent : "";
  form.addEventListener("submit", () => {
    if (!button) return;
    button.textContent = "Checking…";
    // Disabled after this tick, so the browser still submits the form.
    setTimeout(() => { button.disabled = true; }, 0);
  });
  // Back to this page from the result (the back/forward cache keeps it as it was): usable again.
  window.addEventListener("pageshow", () => {
    if (button && !button.hasAttribute("data-model-missing")) {
      button.textContent = label;
      button.disabled = false;
    }
  });
});
