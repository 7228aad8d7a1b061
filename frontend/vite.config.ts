import { defineConfig } from 'vitest/config';
import react from '@vitejs/plugin-react';

// The dev server forwards the node's routes so the page runs same-origin,
// exactly as it does when the node serves `dist/` itself.
const node = process.env.CHATSTREAM_URL ?? 'http://127.0.0.1:8080';

export default defineConfig({
  plugins: [react()],
  server: {
    proxy: {
      '/api': node,
      '/admin': node,
      '/ws': { target: node.replace(/^http/, 'ws'), ws: true },
    },
  },
  build: { sourcemap: true },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
