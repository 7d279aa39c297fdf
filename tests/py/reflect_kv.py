"""A gRPC client nobody at braft wrote: Python's official grpcio and grpcio-reflection.

It discovers braft.v1.Kv by server reflection alone (grpcio-reflection speaks the
v1alpha protocol), builds the message types from the descriptors the server sends,
then puts a key and reads it back. Prints one JSON line with what it found.

usage: reflect_kv.py <host:port>
"""
import json
import sys

import grpc
from google.protobuf import descriptor_pool, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def main() -> None:
    channel = grpc.insecure_channel(sys.argv[1])
    db = ProtoReflectionDescriptorDatabase(channel)
    services = sorted(db.get_services())
    pool = descriptor_pool.DescriptorPool(db)
    kv = pool.FindServiceByName("braft.v1.Kv")

    def call(method: str, **fields):
        m = kv.FindMethodByName(method)
        req_cls = message_factory.GetMessageClass(m.input_type)
        resp_cls = message_factory.GetMessageClass(m.output_type)
        stub = channel.unary_unary(
            f"/{kv.full_name}/{m.name}",
            request_serializer=req_cls.SerializeToString,
            response_deserializer=resp_cls.FromString,
        )
        return stub(req_cls(**fields), timeout=10)

    put = call("Put", key="py/hello", value=b"from python")
    got = call("Get", key="py/hello")
    listed = call("List", prefix="py/")
    print(
        json.dumps(
            {
                "services": services,
                "kv_methods": [m.name for m in kv.methods],
                "put_version": put.version,
                "found": got.found,
                "value": got.value.decode(),
                "version": got.version,
                "keys": list(listed.keys),
            }
        )
    )


if __name__ == "__main__":
    main()
