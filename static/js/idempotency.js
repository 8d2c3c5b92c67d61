// One key per form load: a double submit or a retry after a lost answer starts one run.
for (const key of document.querySelectorAll("#idempotency-key, .idempotency-key")) {
  if (!key.value) key.value = crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) + Math.random();
}
