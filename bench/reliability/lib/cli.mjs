/**
 * Runs a reliability case from the command line: `--quick`, and `--name=N` to
 * override a setting. Prints the result as JSON; exits 0 when it passed, 1
 * when a criterion failed, 2 on an error or a bad argument.
 * @param {(options: { quick: boolean, overrides: Record<string, number> }) => Promise<{ passed: boolean }>} run
 * @param {string} usage
 */
export async function runFromCli(run, usage) {
  const args = process.argv.slice(2);
  const overrides = {};
  for (const arg of args) {
    const m = /^--(\w+)=(\d+)$/.exec(arg);
    if (m) overrides[m[1]] = Number(m[2]);
    else if (arg !== '--quick') {
      console.error(`usage: ${usage}`);
      process.exit(2);
    }
  }
  try {
    const result = await run({ quick: args.includes('--quick'), overrides });
    console.log(JSON.stringify(result, null, 2));
    process.exitCode = result.passed ? 0 : 1;
  } catch (error) {
    console.error(error);
    process.exitCode = 2;
  }
}
