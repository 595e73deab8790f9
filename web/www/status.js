// The end of a driven page (the race, the CPU engine's check): #status says "done", or the
// error, in its text and its data-state, which the node drivers wait for.
export function reportEnd(promise) {
  const status = document.getElementById("status");
  promise.then(() => {
    status.dataset.state = "done";
    status.textContent = "done";
  }, (e) => {
    status.dataset.state = "error";
    status.textContent = `error: ${e.message ?? e}`;
    console.log(`error: ${e.stack ?? e}`);
  });
}
