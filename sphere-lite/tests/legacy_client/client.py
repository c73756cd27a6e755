"""What an original TinyLCM Python client does on the wire, for sphere-lite's compatibility test.

Follows original-server.md section 3: probe GET /api/status, POST /api/devices/register, build a
flat archive with Python's tarfile (its default PAX format), and POST /api/packages/upload as
multipart `package` + `metadata` with requests, exactly as SyncClient.send_package does; then
poll and acknowledge validations. Prints one JSON line per call: {"call", "status", "body"}.

Usage: client.py SERVER_URL DEVICE_ID API_KEY WORK_DIR
"""

import hashlib
import json
import os
import sys
import tarfile
import time
import uuid

import requests

server, device_id, api_key, work = sys.argv[1:5]
headers = {
    "Authorization": f"Bearer {api_key}",
    "X-Device-ID": device_id,
    "Content-Type": "application/json",
}


def show(call, response):
    try:
        body = response.json()
    except ValueError:
        body = response.text
    print(json.dumps({"call": call, "status": response.status_code, "body": body}), flush=True)


show("status", requests.get(f"{server}/api/status", headers=headers, timeout=30))
show(
    "register",
    requests.post(
        f"{server}/api/devices/register",
        headers=headers,
        json={
            "device_id": device_id,
            "device_info": {"hostname": "legacy-pi", "device_model": "Pi Zero 2 W",
                            "tinylcm_version": "0.1.0"},
            "registration_time": time.time(),
        },
        timeout=30,
    ),
)

# A drift_event package: the event, its image, and the image metadata, added by base name.
files = {
    "drift_event.json": json.dumps({
        "timestamp": time.time(), "detector_name": "KNNDistanceMonitor",
        "reason": "Neighbor distance increased", "drift_type": "knn_distance",
        "metrics": {"threshold": 1.2, "change_magnitude": 2.4},
        "sample": {"sample_id": "7", "prediction": "box", "confidence": 0.31,
                   "timestamp": time.time()},
    }).encode(),
    "event_20261126_101010_ab12cd34.jpg": b"\xff\xd8\xff\xe0" + os.urandom(256),
    "image_metadata.json": json.dumps({"relative_path": "x", "target_bucket": "drift"}).encode(),
}
for name, data in files.items():
    with open(os.path.join(work, name), "wb") as f:
        f.write(data)
package_id = str(uuid.uuid4())
archive = os.path.join(work, f"{package_id}_{int(time.time())}.tar")
with tarfile.open(archive, "w") as tar:
    for name in files:
        tar.add(os.path.join(work, name), arcname=name)
with open(archive, "rb") as f:
    md5 = hashlib.md5(f.read()).hexdigest()
metadata = {"device_id": device_id, "package_id": package_id, "package_type": "drift_event",
            "hash": md5, "timestamp": time.time()}
upload_headers = {k: v for k, v in headers.items() if k != "Content-Type"}
for attempt in ("upload", "upload-again"):
    with open(archive, "rb") as f:
        show(attempt, requests.post(
            f"{server}/api/packages/upload",
            headers=upload_headers,
            files={"package": (os.path.basename(archive), f, "application/octet-stream")},
            data={"metadata": json.dumps(metadata)},
        ))

if len(sys.argv) > 5 and sys.argv[5] == "poll":
    pending = requests.get(f"{server}/api/drift/validations/pending",
                           params={"device_id": device_id}, headers=headers, timeout=30)
    show("pending", pending)
    ids = [v["validation_id"] for v in pending.json()]
    show("acknowledge", requests.post(f"{server}/api/drift/validations/acknowledge",
                                      headers=headers, json={"validation_ids": ids}, timeout=30))
