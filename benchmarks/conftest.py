import sys
from pathlib import Path

# benchmarks import their shared shapes module as a plain module
sys.path.insert(0, str(Path(__file__).parent))
