#!/usr/bin/env node
// preinstall: refuses Node versions the dependencies cannot run on (sharp needs 20.9, cmake-js
// 20.17 or 22.9), with one line that says what to install, before npm gets to a stack trace.
// Plain old JavaScript on purpose: it must run on any Node version.
'use strict';

/** Why `version` ('v20.16.0') cannot install this package, or '' when it can. */
function nodeVersionProblem(version) {
  var m = /^v?(\d+)\.(\d+)\./.exec(version);
  if (!m) return '';
  var major = Number(m[1]);
  var minor = Number(m[2]);
  if ((major === 20 && minor >= 17) || (major === 22 && minor >= 9) || major >= 23) return '';
  return (
    'videollama3-node needs Node.js 20.17 or later on the 20 line, or 22.9 or later (this is ' + version + '). ' +
    'Install a current LTS from https://nodejs.org or with your version manager (nvm install 22), then run npm install again.'
  );
}

module.exports = { nodeVersionProblem: nodeVersionProblem };

if (require.main === module) {
  var problem = nodeVersionProblem(process.version);
  if (problem) {
    process.stderr.write(problem + '\n');
    process.exit(1);
  }
}
