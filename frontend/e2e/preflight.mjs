// Says what is missing before any test starts, instead of one failure per test.
import { checkPrerequisites } from './harness.mjs';

try {
  checkPrerequisites();
} catch (error) {
  console.error(/** @type {Error} */ (error).message);
  process.exit(1);
}
