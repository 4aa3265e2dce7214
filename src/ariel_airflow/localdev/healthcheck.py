"""Container health check of the Airflow services (Docker engine), run as a script by Docker.

Standard library only and run by path, so each check costs a bare interpreter start, not an
import of Airflow or of the kit. The same questions as the native engine's probes: does the
api-server answer, and does it report the component's heartbeat as healthy?

    python3 healthcheck.py API_URL [HEARTBEAT_KEY]
"""

import json
import sys
import urllib.request


def main(argv: list[str]) -> int:
    url, key = argv[0], (argv[1] if len(argv) > 1 else None)
    try:
        with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5) as response:
            report = json.load(response)
    except (OSError, ValueError) as exc:
        print(f"api-server at {url}: {exc}")
        return 1
    if key is None:
        return 0
    status = (report.get(key) or {}).get("status")
    print(f"{key}: {status}")
    return 0 if status == "healthy" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
