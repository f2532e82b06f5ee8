/** `profiles`: the built-in hardware profiles (opens no ledger, loads no SQLite). */
import type { Command } from 'commander';
import type { Context } from '../context.js';
import { json } from '../render/format.js';
import { profilesJson, profilesText } from '../render/profiles.js';

export function register(program: Command, { g, out }: Context): void {
  program
    .command('profiles')
    .description('the built-in hardware profiles')
    .action(() => {
      if (g().json) return out(json(profilesJson()));
      out(profilesText());
    });
}
