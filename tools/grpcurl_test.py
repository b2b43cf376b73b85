#!/usr/bin/python3
"""Tests tools/grpcurl against a real gRPC server with reflection.

The server is Python (python3-grpcio) on 127.0.0.1:0: a small Echo service
compiled here with protoc, and the grpc.reflection.v1alpha service written
here too, since Debian's python3-grpcio has no grpc_reflection module. It
answers like gRPC's C++ reflection (a file comes with its imports), or, in
the "lazy" server, without the imports, which grpcurl then fetches by name.
tools/grpcurl runs as a subprocess, exactly as a user runs it.

Run: /usr/bin/python3 tools/grpcurl_test.py   (Bazel: //tools:grpcurl_test)
"""
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest
from concurrent import futures

HERE = os.path.dirname(os.path.abspath(__file__))
GRPCURL = os.path.join(HERE, "grpcurl")
TMP = tempfile.mkdtemp(dir=os.environ.get("TEST_TMPDIR"))
os.environ["CELLAR_GRPCURL_CACHE"] = os.path.join(TMP, "cache")

import grpc  # noqa: E402

ECHO_PROTO = """
syntax = "proto3";
package cellar.grpcurltest;
import "google/protobuf/any.proto";
import "google/protobuf/timestamp.proto";

enum Color { COLOR_UNSPECIFIED = 0; COLOR_RED = 1; }

message Item {
  string item_name = 1;
  int64 big_number = 2;
  uint64 unsigned_number = 3;
  Color color = 4;
  bytes blob = 5;
  repeated int32 small = 6;
  map<string, Item> children = 7;
  oneof choice { string text = 8; int32 number = 9; }
  google.protobuf.Timestamp created_at = 10;
  optional int32 maybe = 11;
  reserved 12, 15 to 17;
}
message EchoRequest {
  Item item = 1;
  int32 count = 2;       // Stream: how many responses
  string fail_code = 3;  // fail with this status code name, with an ErrorInfo detail
  int32 delay_ms = 4;    // sleep before each response
}
message EchoResponse { Item item = 1; int32 index = 2; google.protobuf.Any extra = 3; }
message ErrorInfo { string reason = 1; uint64 oid = 2; }

service Echo {
  rpc Unary(EchoRequest) returns (EchoResponse);
  rpc Stream(EchoRequest) returns (stream EchoResponse);
  rpc Collect(stream EchoRequest) returns (EchoResponse);
}
"""


def load_module(name, path):
    spec = importlib.util.spec_from_loader(
        name, importlib.machinery.SourceFileLoader(name, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


grpcurl = load_module("cellar_grpcurl", GRPCURL)
reflection_pb2, reflection_pb2_grpc = grpcurl.load_reflection_stubs()
with open(os.path.join(TMP, "echo.proto"), "w") as f:
    f.write(ECHO_PROTO)
subprocess.run(["protoc", "-I", TMP, "-I", "/usr/include", "--python_out", TMP,
                os.path.join(TMP, "echo.proto")], check=True)
sys.path.insert(0, TMP)
import echo_pb2  # noqa: E402
from google.protobuf import descriptor_pool  # noqa: E402


class Reflection(reflection_pb2_grpc.ServerReflectionServicer):
    """grpc.reflection.v1alpha over the default descriptor pool."""

    def __init__(self, services, send_imports):
        self.services, self.send_imports = services, send_imports
        self.pool = descriptor_pool.Default()

    def ServerReflectionInfo(self, request_iterator, context):
        for req in request_iterator:
            resp = reflection_pb2.ServerReflectionResponse(valid_host=req.host,
                                                           original_request=req)
            kind = req.WhichOneof("message_request")
            try:
                if kind == "list_services":
                    for name in self.services:
                        resp.list_services_response.service.add(name=name)
                elif kind == "file_by_filename":
                    self._files(resp, self.pool.FindFileByName(req.file_by_filename))
                elif kind == "file_containing_symbol":
                    self._files(resp, self.pool.FindFileContainingSymbol(
                        req.file_containing_symbol))
                else:
                    resp.error_response.error_code = grpc.StatusCode.UNIMPLEMENTED.value[0]
                    resp.error_response.error_message = kind
            except KeyError as e:
                resp.error_response.error_code = grpc.StatusCode.NOT_FOUND.value[0]
                resp.error_response.error_message = str(e)
            yield resp

    def _files(self, resp, fd):
        todo, seen = [fd], set()
        while todo:
            f = todo.pop()
            if f.name not in seen:
                seen.add(f.name)
                resp.file_descriptor_response.file_descriptor_proto.append(f.serialized_pb)
                if self.send_imports:
                    todo.extend(f.dependencies)


def echo_response(req, context, index=0):
    if req.delay_ms:
        time.sleep(req.delay_ms / 1000)
    if req.fail_code:
        status = grpcurl._status_class()(code=grpc.StatusCode[req.fail_code].value[0],
                                         message="no such object")
        status.details.add().Pack(echo_pb2.ErrorInfo(reason="OID_UNKNOWN", oid=42))
        context.set_trailing_metadata([("grpc-status-details-bin", status.SerializeToString())])
        context.abort(grpc.StatusCode[req.fail_code], "no such object")
    resp = echo_pb2.EchoResponse(item=req.item, index=index)
    if req.item.item_name == "whoami":
        resp.item.item_name = dict(context.invocation_metadata()).get("authorization", "")
    resp.extra.Pack(echo_pb2.ErrorInfo(reason="EXTRA", oid=7))
    return resp


def start_server(reflection=True, send_imports=True):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    serde = dict(request_deserializer=echo_pb2.EchoRequest.FromString,
                 response_serializer=echo_pb2.EchoResponse.SerializeToString)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(
        "cellar.grpcurltest.Echo", {
            "Unary": grpc.unary_unary_rpc_method_handler(echo_response, **serde),
            "Stream": grpc.unary_stream_rpc_method_handler(
                lambda req, ctx: (echo_response(req, ctx, i) for i in range(req.count)),
                **serde),
            "Collect": grpc.stream_unary_rpc_method_handler(
                lambda reqs, ctx: echo_pb2.EchoResponse(index=sum(r.count for r in reqs)),
                **serde),
        })])
    services = ["cellar.grpcurltest.Echo"]
    if reflection:
        services.append("grpc.reflection.v1alpha.ServerReflection")
        reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
            Reflection(services, send_imports), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, "127.0.0.1:%d" % port


def run(*args, stdin=None):
    return subprocess.run(["/usr/bin/python3", GRPCURL] + list(args), input=stdin,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)


class GrpcurlTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server, cls.addr = start_server()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop(None)

    def ok(self, *args, stdin=None):
        r = run("-plaintext", *args, stdin=stdin)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")
        return r.stdout

    def test_list(self):
        self.assertEqual(self.ok(self.addr, "list"),
                         "cellar.grpcurltest.Echo\ngrpc.reflection.v1alpha.ServerReflection\n")

    def test_list_service(self):
        self.assertEqual(self.ok(self.addr, "list", "cellar.grpcurltest.Echo"),
                         "cellar.grpcurltest.Echo.Collect\ncellar.grpcurltest.Echo.Stream\n"
                         "cellar.grpcurltest.Echo.Unary\n")

    def test_list_unknown_service(self):
        r = run("-plaintext", self.addr, "list", "cellar.grpcurltest.Nope")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, 'Failed to list methods for service "cellar.grpcurltest.Nope": '
                                   'Symbol not found: cellar.grpcurltest.Nope\n')

    def test_describe_service(self):
        self.assertEqual(self.ok(self.addr, "describe", "cellar.grpcurltest.Echo"), """\
cellar.grpcurltest.Echo is a service:
service Echo {
  rpc Unary ( .cellar.grpcurltest.EchoRequest ) returns ( .cellar.grpcurltest.EchoResponse );
  rpc Stream ( .cellar.grpcurltest.EchoRequest ) returns ( stream .cellar.grpcurltest.EchoResponse );
  rpc Collect ( stream .cellar.grpcurltest.EchoRequest ) returns ( .cellar.grpcurltest.EchoResponse );
}
""")

    def test_describe_method_message_enum_field(self):
        self.assertEqual(self.ok(self.addr, "describe", "cellar.grpcurltest.Echo/Stream"),
                         "cellar.grpcurltest.Echo.Stream is a method:\nrpc Stream ( "
                         ".cellar.grpcurltest.EchoRequest ) returns ( stream "
                         ".cellar.grpcurltest.EchoResponse );\n")
        self.assertEqual(self.ok(self.addr, "describe", ".cellar.grpcurltest.Item"), """\
cellar.grpcurltest.Item is a message:
message Item {
  string item_name = 1;
  int64 big_number = 2;
  uint64 unsigned_number = 3;
  .cellar.grpcurltest.Color color = 4;
  bytes blob = 5;
  repeated int32 small = 6;
  map<string, .cellar.grpcurltest.Item> children = 7;
  oneof choice {
    string text = 8;
    int32 number = 9;
  }
  .google.protobuf.Timestamp created_at = 10;
  optional int32 maybe = 11;
  reserved 12;
  reserved 15 to 17;
}
""")
        self.assertEqual(self.ok(self.addr, "describe", "cellar.grpcurltest.Color"),
                         "cellar.grpcurltest.Color is an enum:\nenum Color {\n"
                         "  COLOR_UNSPECIFIED = 0;\n  COLOR_RED = 1;\n}\n")
        self.assertEqual(self.ok(self.addr, "describe", "cellar.grpcurltest.Item.big_number"),
                         "cellar.grpcurltest.Item.big_number is a field:\n"
                         "int64 big_number = 2;\n")

    def test_describe_everything(self):
        out = self.ok(self.addr, "describe")
        self.assertIn("cellar.grpcurltest.Echo is a service:", out)
        self.assertIn("grpc.reflection.v1alpha.ServerReflection is a service:", out)

    def test_describe_unknown_symbol(self):
        r = run("-plaintext", self.addr, "describe", "cellar.grpcurltest.Nope")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, 'Failed to resolve symbol "cellar.grpcurltest.Nope": '
                                   'Symbol not found: cellar.grpcurltest.Nope\n')

    def test_unary_json_like_grpcurl(self):
        request = {"item": {"item_name": "a", "bigNumber": "9007199254740993",
                            "unsignedNumber": 18446744073709551615, "color": "COLOR_RED",
                            "blob": "AAEC", "small": [1, 2], "number": 5,
                            "createdAt": "2024-01-02T03:04:05Z",
                            "children": {"k": {"itemName": "child"}}}}
        out = self.ok("-d", json.dumps(request), self.addr, "cellar.grpcurltest.Echo/Unary")
        self.assertTrue(out.startswith('{\n  "item": {\n    "itemName": "a",\n'), out)
        self.assertEqual(json.loads(out), {
            "item": {"itemName": "a", "bigNumber": "9007199254740993",
                     "unsignedNumber": "18446744073709551615", "color": "COLOR_RED",
                     "blob": "AAEC", "small": [1, 2], "number": 5,
                     "createdAt": "2024-01-02T03:04:05Z",
                     "children": {"k": {"itemName": "child"}}},
            "extra": {"@type": "type.googleapis.com/cellar.grpcurltest.ErrorInfo",
                      "reason": "EXTRA", "oid": "7"}})

    def test_unary_defaults_stdin_and_dot_method(self):
        self.assertEqual(json.loads(self.ok("-d", "@", self.addr, "cellar.grpcurltest.Echo.Unary",
                                            stdin='{"item": {}}'))["item"], {})
        out = self.ok("-emit-defaults", self.addr, "cellar.grpcurltest.Echo/Unary")
        self.assertEqual(json.loads(out)["index"], 0)

    def test_server_stream(self):
        out = self.ok("-d", '{"count": 3, "item": {"bigNumber": 1}}', self.addr,
                      "cellar.grpcurltest.Echo/Stream")
        messages = grpcurl.split_json(out)
        self.assertEqual([m.get("index", 0) for m in messages], [0, 1, 2])
        self.assertEqual(messages[2]["item"], {"bigNumber": "1"})

    def test_client_stream(self):
        out = self.ok("-d", '{"count": 1} {"count": 2}\n{"count": 4}', self.addr,
                      "cellar.grpcurltest.Echo/Collect")
        self.assertEqual(json.loads(out), {"index": 7})

    def test_headers(self):
        out = self.ok("-H", "Authorization: Bearer t0ken", "-d", '{"item": {"itemName": "whoami"}}',
                      self.addr, "cellar.grpcurltest.Echo/Unary")
        self.assertEqual(json.loads(out)["item"]["itemName"], "Bearer t0ken")
        out = self.ok("-reflect-header", "authorization: other", "-rpc-header",
                      "authorization: rpc", "-d", '{"item": {"itemName": "whoami"}}',
                      self.addr, "cellar.grpcurltest.Echo/Unary")
        self.assertEqual(json.loads(out)["item"]["itemName"], "rpc")

    def test_error_status_with_details(self):
        r = run("-plaintext", "-d", '{"failCode": "NOT_FOUND"}', self.addr,
                "cellar.grpcurltest.Echo/Unary")
        self.assertEqual(r.returncode, 64 + 5, r.stderr)
        self.assertEqual(r.stdout, "")
        self.assertEqual(r.stderr, """\
ERROR:
  Code: NotFound
  Message: no such object
  Details:
  1)\t{
    \t  "@type": "type.googleapis.com/cellar.grpcurltest.ErrorInfo",
    \t  "reason": "OID_UNKNOWN",
    \t  "oid": "42"
    \t}
""")

    def test_stream_error_after_messages(self):
        r = run("-plaintext", "-d", '{"count": 2, "failCode": "ABORTED"}', self.addr,
                "cellar.grpcurltest.Echo/Stream")
        self.assertEqual(r.returncode, 64 + 10)
        self.assertTrue(r.stderr.startswith("ERROR:\n  Code: Aborted\n"), r.stderr)

    def test_max_time(self):
        r = run("-plaintext", "-max-time", "0.5", "-d", '{"count": 5, "delayMs": 400}', self.addr,
                "cellar.grpcurltest.Echo/Stream")
        self.assertEqual(r.returncode, 64 + 4, r.stderr)
        self.assertEqual(len(grpcurl.split_json(r.stdout)), 1)
        self.assertTrue(r.stderr.startswith("ERROR:\n  Code: DeadlineExceeded\n"), r.stderr)

    def test_bad_requests(self):
        r = run("-plaintext", "-d", '{"nope": 1}', self.addr, "cellar.grpcurltest.Echo/Unary")
        self.assertEqual(r.returncode, 1)
        self.assertIn('Error invoking method "cellar.grpcurltest.Echo/Unary": '
                      'error getting request data:', r.stderr)
        self.assertEqual(run("-plaintext", "-allow-unknown-fields", "-d", '{"nope": 1}',
                             self.addr, "cellar.grpcurltest.Echo/Unary").returncode, 0)
        r = run("-plaintext", "-d", '{} {}', self.addr, "cellar.grpcurltest.Echo/Unary")
        self.assertEqual(r.returncode, 1)
        r = run("-plaintext", self.addr, "cellar.grpcurltest.Echo/Nope")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, 'Error invoking method "cellar.grpcurltest.Echo/Nope": service '
                                   '"cellar.grpcurltest.Echo" does not include a method named '
                                   '"Nope"\n')

    def test_usage(self):
        for args in ([], ["-plaintext"], ["list"], ["-nope", self.addr, "list"],
                     ["-plaintext", self.addr], ["-plaintext", self.addr, "list", "a", "b"],
                     ["-d"]):
            r = run(*args)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn("Try 'tools/grpcurl -help'", r.stderr)
        self.assertEqual(run("-help").returncode, 0)

    def test_connection_refused(self):
        server, addr = start_server()
        server.stop(None)
        r = run("-plaintext", addr, "list")
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, 'Failed to dial target host "%s": connection failed\n' % addr)


class OtherServersTest(unittest.TestCase):
    def test_no_reflection(self):
        server, addr = start_server(reflection=False)
        try:
            r = run("-plaintext", addr, "list")
        finally:
            server.stop(None)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr, "Failed to list services: server does not support the "
                                   "reflection API\n")

    def test_imports_fetched_by_file_name(self):
        server, addr = start_server(send_imports=False)
        try:
            r = run("-plaintext", "-d", '{"item": {"createdAt": "2024-01-02T03:04:05Z"}}',
                    addr, "cellar.grpcurltest.Echo/Unary")
        finally:
            server.stop(None)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["item"]["createdAt"], "2024-01-02T03:04:05Z")


if __name__ == "__main__":
    unittest.main(verbosity=2)
