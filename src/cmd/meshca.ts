#!/usr/bin/env node
import { runCli } from './program.js';

const code = await runCli(process.argv.slice(2));
// A refused start must end the process now, even if something it opened still holds the event
// loop (a half-started listener, a retry timer): in Kubernetes that is a restart, not a hang.
if (code !== 0) process.exit(code);
