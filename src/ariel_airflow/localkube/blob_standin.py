"""The storage account's containers in Azurite (the local cluster's Blob Storage), made at start.

On Azure the platform's infrastructure creates the task logs' container; here this sidecar of the
stand-ins' pod does, with the account's shared key, once Azurite answers at the account's own URL
(the cluster DNS sends ``<account>.blob.core.windows.net`` to Azurite, which takes the account from
the host name). Then it waits, so the pod stays Ready.

    python -m ariel_airflow.localkube.blob_standin --account-url URL --container NAME [--container …]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import time

log = logging.getLogger("blob-standin")

ACCOUNTS_SETTING = "AZURITE_ACCOUNTS"  # Azurite's own: "<account>:<base64 key>"


def create_containers(account_url: str, containers: list[str], timeout: float = 300) -> None:
    from azure.core.exceptions import ResourceExistsError, ServiceRequestError
    from azure.storage.blob import BlobServiceClient

    account, _, key = os.environ[ACCOUNTS_SETTING].partition(":")
    client = BlobServiceClient(account_url, credential={"account_name": account, "account_key": key})
    deadline = time.monotonic() + timeout
    for name in containers:
        while True:
            try:
                client.create_container(name)
                log.info("container %s created", name)
                break
            except ResourceExistsError:
                log.info("container %s exists", name)
                break
            except ServiceRequestError as exc:
                if time.monotonic() > deadline:
                    raise
                log.info("waiting for Azurite: %s", exc)
                time.sleep(2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ariel_airflow.localkube.blob_standin", description=__doc__
    )
    parser.add_argument("--account-url", required=True)
    parser.add_argument("--container", action="append", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)
    create_containers(args.account_url, args.container)
    signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
