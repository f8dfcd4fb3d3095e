// portwatch-bench: benchmark helpers that are not part of the CLI (see benchmarks/README.md).
print("portwatch-bench: no benchmark selected")
