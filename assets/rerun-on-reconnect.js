(() => {
  const app = document.querySelector("[data-testid=stApp]");
  if (!app || window.chatbotRerunOnReconnect) return;
  window.chatbotRerunOnReconnect = true;
  let state = app.dataset.testConnectionState;
  new MutationObserver(() => {
    const now = app.dataset.testConnectionState;
    if (now === "CONNECTED" && state !== "CONNECTED") document.querySelector(".st-key-app_reconnect button")?.click();
    state = now;
  }).observe(app, { attributes: true, attributeFilter: ["data-test-connection-state"] });
})();