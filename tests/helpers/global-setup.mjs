// Jest global setup for the integration project: starts the shared services (start-services.ts).
import { tsImport } from 'tsx/esm/api';

export default async function globalSetup() {
  const { startSharedServices } = await tsImport('./start-services.ts', import.meta.url);
  globalThis.__comfyumeServices = await startSharedServices();
}
