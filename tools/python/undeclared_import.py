import duckdb  # deliberately undeclared: see hermetic_test.py

print(duckdb.__version__)
