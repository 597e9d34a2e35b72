"""The S3 calls of uploads: multipart uploads (minio-py's are underscore-private in 7.2.x; they
stay behind this small interface, which the tests exercise against real S3 servers) and whole
small objects in one PUT. Every call blocks: run it in a thread.
"""

from __future__ import annotations

from minio.datatypes import Part

from edged.s3bucket import SHA256_HEADER, S3Bucket


class S3Store(S3Bucket):
    """The bucket uploads write to: what the cache reads, and the calls that write."""

    def create_upload(self, key: str, sha256: str) -> str:
        headers = {
            "Content-Type": "video/mp4" if key.endswith(".mp4") else "application/octet-stream",
            SHA256_HEADER: sha256,
        }
        return str(
            self._call(
                f"create upload {key}",
                self._client._create_multipart_upload,
                self.bucket,
                key,
                headers,
            )
        )

    def upload_part(self, key: str, upload_id: str, number: int, data: bytes) -> str:
        return str(
            self._call(
                f"upload part {number} of {key}",
                self._client._upload_part,
                self.bucket,
                key,
                data,
                None,
                upload_id,
                number,
            )
        ).strip('"')

    def complete(self, key: str, upload_id: str, etags: list[tuple[int, str]]) -> str:
        parts = [Part(number, etag) for number, etag in etags]
        result = self._call(
            f"complete {key}",
            self._client._complete_multipart_upload,
            self.bucket,
            key,
            upload_id,
            parts,
        )
        return str(result.etag).strip('"')

    def abort(self, key: str, upload_id: str) -> None:
        self._call(
            f"abort {key}",
            self._client._abort_multipart_upload,
            self.bucket,
            key,
            upload_id,
        )

    def list_parts(self, key: str, upload_id: str) -> dict[int, str]:
        """The parts the upstream holds for an upload: number -> ETag (a cross-check only)."""
        found: dict[int, str] = {}
        marker: str | None = None
        while True:
            result = self._call(
                f"list parts of {key}",
                self._client._list_parts,
                self.bucket,
                key,
                upload_id,
                1000,
                marker,
            )
            found.update({part.part_number: part.etag.strip('"') for part in result.parts})
            if not result.is_truncated:
                return found
            marker = result.next_part_number_marker

    def incomplete_uploads(self, prefix: str) -> list[tuple[str, str]]:
        """(key, upload id) of every unfinished multipart upload under `prefix`."""
        found: list[tuple[str, str]] = []
        key_marker: str | None = None
        upload_marker: str | None = None
        while True:
            result = self._call(
                "list incomplete uploads",
                self._client._list_multipart_uploads,
                self.bucket,
                None,
                None,
                key_marker,
                None,
                prefix,
                upload_marker,
            )
            found.extend((upload.object_name, upload.upload_id) for upload in result.uploads)
            if not result.is_truncated:
                return found
            key_marker, upload_marker = result.next_key_marker, result.next_upload_id_marker

    def put(self, key: str, data: bytes, sha256: str, content_type: str) -> str:
        """A whole small object in one PUT; its ETag."""
        headers = {"Content-Type": content_type, SHA256_HEADER: sha256}
        result = self._call(
            f"put {key}",
            self._client._put_object,
            self.bucket,
            key,
            data,
            headers,
        )
        return str(result.etag).strip('"')
