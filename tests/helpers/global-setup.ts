// Placeholder until the shared services land; replaced by the foundation work.
export default async function globalSetup(): Promise<void> {}
