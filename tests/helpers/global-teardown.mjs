// Stops what global setup started: nothing is left running after `npm test`.
export default async function globalTeardown() {
  const running = globalThis.__comfyumeServices ?? [];
  await Promise.allSettled(running.splice(0).map((service) => service.stop()));
}
