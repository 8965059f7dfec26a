// Compiles the stand-in contracts and prints their runtime bytecode as JSON,
// {"TestUSDC": "0x…", "TestSanctionsOracle": "0x…"}, for `anvil_setCode`.
const fs = require("fs");
const path = require("path");
const solc = require("solc");

const file = "TestUSDC.sol";
const input = {
  language: "Solidity",
  sources: { [file]: { content: fs.readFileSync(path.join(__dirname, "contracts", file), "utf8") } },
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "cancun",
    outputSelection: { "*": { "*": ["evm.deployedBytecode.object"] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === "error");
if (errors.length) {
  console.error(errors.map((e) => e.formattedMessage).join("\n"));
  process.exit(1);
}
const code = {};
for (const [name, contract] of Object.entries(output.contracts[file])) {
  code[name] = "0x" + contract.evm.deployedBytecode.object;
}
process.stdout.write(JSON.stringify(code));
