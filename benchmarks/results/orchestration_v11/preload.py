import sys, time, os
T0 = time.time()
import ray
mode = sys.argv[1]
kw = dict(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
          configure_logging=False, object_store_memory=256 * 1024**2)
if mode == "pre":
    kw["_system_config"] = {"preload_python_modules": ["scaletune.trainer.loop"]}
ray.init(**kw)
T1 = time.time()

@ray.remote(num_cpus=1)
def warm():
    t = time.time()
    import scaletune.trainer.loop  # noqa
    fields = open(f"/proc/{os.getpid()}/stat").read().rpartition(")")[2].split()
    boot = next(float(l.split()[1]) for l in open("/proc/stat") if l.startswith("btime "))
    born = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return born, t, time.time()

r = ray.get([warm.remote(), warm.remote()])
T2 = time.time()
print(f"{mode:4s} init {T1-T0:.2f}  workers born {', '.join(f'{b-T0:.2f}' for b,_,_ in r)}  task start {', '.join(f'{s-T0:.2f}' for _,s,_ in r)}  ready(imported) {', '.join(f'{e-T0:.2f}' for _,_,e in r)}  all {T2-T0:.2f}")
ray.shutdown()
