// Progressive enhancement only: drag-and-drop, a preview, and an upload progress bar. Without this script the
// form posts the same way and the server answers with the same page.
"use strict";

function init() {
  const form = document.getElementById("upload");
  const input = document.getElementById("file");
  const drop = form && form.querySelector(".drop");
  const preview = document.getElementById("preview");
  if (!form || !input || !drop || !preview) return;

  let previewUrl = null;
  const showPreview = () => {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    const file = input.files && input.files[0];
    // A video cannot be shown in an <img>: its name is shown instead.
    previewUrl = file && file.type.startsWith("image/") ? URL.createObjectURL(file) : null;
    preview.hidden = !previewUrl;
    if (previewUrl) {
      preview.src = previewUrl;
      preview.alt = "preview of " + file.name;
    }
    if (file) {
      drop.querySelector(".drop-text").textContent =
        input.files.length > 1 ? input.files.length + " files chosen" : file.name;
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
  if (button) button.dataset.label = label;
  const progress = document.getElementById("progress");
  const status = document.getElementById("status");
  const ready = () => {
    if (button && !button.hasAttribute("data-model-missing")) {
      button.textContent = label;
      button.disabled = false;
    }
  };
  const failed = (message) => {
    if (progress) progress.hidden = true;
    if (status) status.textContent = message;
    ready();
  };
  form.addEventListener("submit", (event) => {
    if (button) {
      button.textContent = "Checking…";
      button.disabled = true;
    }
    if (!window.FormData || !progress || !status) return; // the browser posts the form itself
    // Posted here instead, to show how much of a large video has gone up; the answer is the same page.
    event.preventDefault();
    const request = new XMLHttpRequest();
    // A Content-Security-Policy without connect-src 'self' blocks this request: the browser then posts the
    // form itself (form.submit() fires no submit event), as it would without this script.
    let postedPlainly = false;
    const postPlainly = () => {
      if (postedPlainly) return;
      postedPlainly = true;
      request.abort();
      status.textContent = "Uploading…";
      form.submit();
    };
    const onViolation = (e) => {
      if ((e.effectiveDirective || e.violatedDirective || "").startsWith("connect-src")) postPlainly();
    };
    document.addEventListener("securitypolicyviolation", onViolation);
    const done = () => document.removeEventListener("securitypolicyviolation", onViolation);

    request.open("POST", form.action);
    progress.hidden = false;
    progress.value = 0;
    status.textContent = "Uploading…";
    request.upload.addEventListener("progress", (e) => {
      if (!e.lengthComputable) return;
      progress.value = e.loaded / e.total;
      status.textContent = "Uploading… " + Math.round((100 * e.loaded) / e.total) + "%";
    });
    request.upload.addEventListener("load", () => {
      progress.removeAttribute("value"); // indeterminate while the server works
      status.textContent = "Uploaded; finding faces and judging them…";
    });
    request.addEventListener("load", () => {
      done();
      const type = request.getResponseHeader("Content-Type") || "";
      const page = type.startsWith("text/html")
        ? new DOMParser().parseFromString(request.responseText, "text/html")
        : null;
      // Anything but this app's page (a proxy's error, say) is reported here rather than swapped in.
      if (!page || !page.getElementById("upload")) {
        failed("The server answered " + request.status + " " + request.statusText + ". Try again.");
        return;
      }
      document.title = page.title;
      document.body.replaceWith(page.body);
      window.scrollTo(0, 0);
      init();
    });
    request.addEventListener("error", () => {
      // The policy's violation event may come after this one (the listener stays for it): wait one turn before
      // calling it a lost connection.
      setTimeout(() => {
        if (!postedPlainly) failed("The upload failed: the connection was lost. Try again.");
      }, 0);
    });
    request.send(new FormData(form));
  });
}

document.addEventListener("DOMContentLoaded", init);
// Back to this page from the result (the back/forward cache keeps it as it was, mid-upload): usable again.
window.addEventListener("pageshow", (event) => {
  if (!event.persisted) return;
  const button = document.querySelector("#upload button[type=submit]");
  const progress = document.getElementById("progress");
  const status = document.getElementById("status");
  if (button && button.dataset.label && !button.hasAttribute("data-model-missing")) {
    button.textContent = button.dataset.label;
    button.disabled = false;
  }
  if (progress) progress.hidden = true;
  if (status) status.textContent = "";
});
