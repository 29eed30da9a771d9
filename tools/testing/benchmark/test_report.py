# SPDX-License-Identifier: GPL-2.0
"""Host tests of the benchmark's arithmetic and parsing (python3 -m unittest)."""

import os
import re
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import guest  # noqa: E402
import report  # noqa: E402

MACHINE = {"kernel": "6.12", "cpus": 2, "cpu_model": "x", "memory_kib": 3 << 20,
           "accel": "TCG", "tools": {"fio": "fio-3.33"}}


def run(round_no, tool, workload, backing, target, iops, **more):
    return {"round": round_no, "tool": tool, "workload": workload, "backing": backing,
            "target": target, "iops": iops, "bw_bytes": iops * 4096, **more}


class Summaries(unittest.TestCase):
    def record(self):
        runs = []
        for r, (ours, lio, tgt, ceiling) in enumerate([(100, 80, 40, 200), (120, 70, 30, 210),
                                                        (900, 75, 35, 190)]):
            runs += [run(r, "iscsi-perf", "randread-4k-qd32", "file", "scst-rs", ours),
                     run(r, "iscsi-perf", "randread-4k-qd32", "file", "LIO", lio),
                     run(r, "iscsi-perf", "randread-4k-qd32", "file", "tgt", tgt),
                     run(r, "iscsi-perf", "randread-4k-qd32", "none", "ceiling", ceiling)]
        runs += [run(0, "fio-iscsi", "randread-512-qd1", "file", "scst-rs", 900, lat_mean_us=110.0),
                 run(0, "fio-iscsi", "randread-512-qd1", "file", "LIO", 1000, lat_mean_us=100.0)]
        runs.append(run(0, "iscsi-perf", "randread-4k-qd32", "null", "scst-rs", 0) |
                    {"error": "boom", "iops": None})
        return {"machine": MACHINE, "rounds": 3, "seconds": 5, "runs": runs}

    def test_medians_resist_an_outlier(self):
        summary = report.summarize(self.record())
        ours = next(e for e in summary["medians"]
                    if e["target"] == "scst-rs" and e["backing"] == "file")
        self.assertEqual(ours["iops"], 120)
        self.assertEqual((ours["iops_min"], ours["iops_max"]), (100, 900))
        self.assertEqual(ours["runs"], 3)

    def test_ratios_against_each_peer_and_the_ceiling(self):
        summary = report.summarize(self.record())
        ratios = {(r["backing"], r["peer"]): r["iops"] for r in summary["ratios"]
                  if r["tool"] == "iscsi-perf"}
        self.assertAlmostEqual(ratios[("file", "LIO")], 120 / 75)
        self.assertAlmostEqual(ratios[("file", "tgt")], 120 / 35)
        self.assertAlmostEqual(ratios[("file", "ceiling")], 120 / 200)

    def test_user_handler_against_vdisk_fileio(self):
        record = self.record()
        record["runs"] += [run(0, "fio-user", "randread-4k-qd32", "file", "scst_user", 600,
                               ctxt_per_io=3.0),
                           run(0, "fio-user", "randread-4k-qd32", "file", "vdisk_fileio", 1000,
                               ctxt_per_io=1.0)]
        summary = report.summarize(record)
        ratio = next(r for r in summary["ratios"] if r["tool"] == "fio-user")
        self.assertEqual((ratio["ours"], ratio["peer"]), ("scst_user", "vdisk_fileio"))
        self.assertAlmostEqual(ratio["iops"], 0.6)
        text = report.markdown(record, summary)
        self.assertIn("| randread-4k-qd32 | file | 600 | 1000 | 0.60 |", text)

    def test_failed_runs_are_counted_not_averaged(self):
        summary = report.summarize(self.record())
        failed = next(e for e in summary["medians"] if e["backing"] == "null")
        self.assertEqual((failed["runs"], failed["failed"], failed["iops"]), (1, 1, None))
        self.assertIn("1 of 1", report.markdown(self.record(), summary))

    def test_goals(self):
        goals = {g["goal"]: g for g in report.summarize(self.record())["goals"]}
        lio = goals["4 KiB QD32 random read >= 1.2x LIO (file)"]
        self.assertTrue(lio["met"])
        self.assertTrue(goals["4 KiB QD32 random read >= 2.5x tgt (file)"]["met"])
        # Lower is better for latency.
        self.assertFalse(goals["512 B QD1 mean latency <= LIO's (file)"]["met"])
        # Not measured in this record: no verdict either way.
        self.assertIsNone(goals["512 B QD1 mean latency <= LIO's (null)"]["met"])
        self.assertIn("not measured", report.markdown(self.record(), report.summarize(
            self.record())))

    def test_srp_goals_against_lio_srpt(self):
        record = self.record()
        record["runs"] += [
            run(0, "fio-srp", "randread-4k-qd32", "null", "scst-rs", 900),
            run(0, "fio-srp", "randread-4k-qd32", "null", "LIO", 1000),
            run(0, "fio-srp", "randread-512-qd1", "null", "scst-rs", 500, lat_mean_us=90.0),
            run(0, "fio-srp", "randread-512-qd1", "null", "LIO", 400, lat_mean_us=100.0)]
        summary = report.summarize(record)
        goals = {g["goal"]: g for g in summary["goals"]}
        iops = goals["SRP: 4 KiB QD32 random read >= LIO's ib_srpt (null)"]
        self.assertAlmostEqual(iops["ratio"], 0.9)
        self.assertFalse(iops["met"])
        self.assertTrue(goals["SRP: 512 B QD1 mean latency <= LIO's ib_srpt (null)"]["met"])
        self.assertIn("## fio-srp: ", report.markdown(record, summary))


class Parsing(unittest.TestCase):
    def test_iscsi_perf_final_average(self):
        out = ("00:00:01 - lba 1, iops current 110803 (432 MB/s), iops average 110777 (432 MB/s)"
               "\riops average 110125 (430 MB/s)      \n\nfinished.\n")
        self.assertEqual(guest.parse_iscsi_perf(out, 4096), (110125, 110125 * 4096))
        with self.assertRaises(RuntimeError):
            guest.parse_iscsi_perf("Login Failed.\n", 4096)


if __name__ == "__main__":
    unittest.main()


class Ceiling(unittest.TestCase):
    """The ceiling responder, driven by libiscsi on the host's loopback
    (run-tests builds it first)."""

    def test_reads_writes_and_attach_commands(self):
        here = os.path.dirname(os.path.abspath(__file__))
        binary = os.path.join(here, "responder", "target", "release", "iscsi-ceiling")
        self.assertTrue(os.path.exists(binary), "build it: cargo build --release in responder/")
        iqn = "iqn.2026-11.org.scst-rs:ceiling-test"
        proc = subprocess.Popen([binary, "127.0.0.1:3299", iqn], stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.3)
            url = f"iscsi://127.0.0.1:3299/{iqn}/0"
            out = subprocess.run(["iscsi-perf", "-t", "1", "-r", "-m", "8", url],
                                 capture_output=True, text=True, timeout=60).stdout
            iops, _ = guest.parse_iscsi_perf(out, 4096)
            self.assertGreater(iops, 0)
            # READ CAPACITY, INQUIRY, reads and writes, as the kernel's initiator
            # issues them (it also asks for REPORT LUNS: iscsi-ls does too).
            tests = "SCSI.Read16.Simple,SCSI.Write16.Simple,SCSI.ReadCapacity16.Simple," \
                    "SCSI.Read10.Simple,SCSI.Inquiry.Standard"
            cu = subprocess.run(["iscsi-test-cu", "-d", "-t", tests, url],
                                capture_output=True, text=True, timeout=120)
            # CUnit's run summary: "tests <suites> <ran> <passed> <failed> <inactive>".
            summary = re.search(r"^\s+tests\s+\d+\s+(\d+)\s+(\d+)\s+(\d+)", cu.stdout, re.M)
            self.assertIsNotNone(summary, cu.stdout[-2000:])
            ran, passed, failed = map(int, summary.groups())
            self.assertEqual((ran, passed, failed), (5, 5, 0), cu.stdout[-2000:])
            ls = subprocess.run(["iscsi-ls", "-s", "iscsi://127.0.0.1:3299"],
                                capture_output=True, text=True, timeout=60).stdout
            self.assertIn(iqn, ls)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
