#!/usr/bin/env node
// Runs the compiled CLI (npm run build, done by `npm ci` via prepare).
import '../dist/cmd/meshca.js';
