// What `npm install` checks before it builds or loads anything.
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const require = createRequire(__filename);
const { nodeVersionProblem } = require(join(__dirname, '..', 'scripts', 'check-node.cjs')) as { nodeVersionProblem(v: string): string };

describe('preinstall: the Node version (scripts/check-node.cjs)', () => {
  it('refuses versions sharp or cmake-js cannot run on, saying which is needed', () => {
    for (const v of ['v18.20.4', 'v20.0.0', 'v20.9.0', 'v20.16.0', 'v21.7.3', 'v22.8.0']) {
      expect(nodeVersionProblem(v), v).toContain('needs Node.js 20.17 or later');
      expect(nodeVersionProblem(v), v).toContain(v);
    }
  });
  it('accepts 20.17+, 22.9+ and later majors', () => {
    for (const v of ['v20.17.0', 'v20.20.2', 'v22.9.0', 'v22.12.0', 'v24.1.0', process.version]) expect(nodeVersionProblem(v), v).toBe('');
  });
});
