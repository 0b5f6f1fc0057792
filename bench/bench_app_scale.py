"""The app at scale in headless Chromium: new 500 / 5,000-point views, the 5,000 view reopened, 21,000 points.

Usage (the dataset from scripts/make_synthetic_dataset.py, baseline:mel already stored in CACHE)::

    python bench/bench_app_scale.py DATASET CACHE [SHOTS_DIR]

Each view opens in a fresh browser context on one warm server; a view counts as shown when
the first plot is drawn and Streamlit's "running" indicator has been gone for 1 s.
"""
import os, socket, subprocess, sys, time, urllib.request
from pathlib import Path
from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[1]
DATASET, CACHE = sys.argv[1], sys.argv[2]
SHOTS = Path(sys.argv[3] if len(sys.argv) > 3 else "artifacts/bench"); SHOTS.mkdir(parents=True, exist_ok=True)
WORDS = "backward,bed,bird,cat,dog,down,eight,five,follow,forward,four,go,happy,house,learn,left,marvin,nine,no,off,on,one,right,seven,sheila,six,stop,three,tree,two,up,visual,wow,yes,zero"
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
env = {**os.environ, "EMBEDVIZ_CACHE": CACHE, "HF_HUB_OFFLINE": "1", "EMBEDVIZ_DATA_ROOTS": str(Path(DATASET).parent)}
log = open(SHOTS / "streamlit.log", "w")
proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.headless", "true",
    "--server.port", str(port), "--server.address", "127.0.0.1"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
url = f"http://127.0.0.1:{port}"
def base(n, extra=""):
    return f"{url}/?data={DATASET}&model=baseline:mel&layers=logmel,mfcc&words={WORDS}&n={n}{extra}"
def settle(page, timeout=400):
    t0 = time.time()
    page.get_by_text("1 · Models").wait_for(timeout=timeout * 1000)
    # Streamlit shows its status widget while a script runs; wait until it has been gone for 1 s.
    quiet = 0.0
    while time.time() - t0 < timeout:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
        quiet = 0.0 if running else quiet + 0.25
        if quiet >= 1.0 and page.locator(".js-plotly-plot").count() >= 1:
            break
        page.wait_for_timeout(250)
    return time.time() - t0 - 1.0
try:
    for _ in range(120):
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=2); break
        except OSError:
            time.sleep(0.5)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"])
        def tab():
            return b.new_context(viewport={"width": 1500, "height": 1300}).new_page()
        pg = tab(); pg.goto(base(3)); t = settle(pg); print(f"warm-up (dataset scan, 105 points): {t:.1f} s", flush=True)
        results = {}
        for name, n, extra in [("500", 15, ""), ("5000", 150, ""), ("5000 reopened", 150, ""), ("21000", 600, "")]:
            pg = tab(); pg.goto(base(n, extra)); t = settle(pg); results[name] = t
            print(f"{name}: {t:.1f} s", flush=True)
            pg.screenshot(path=str(SHOTS / f"scale_{name.replace(' ', '_')}.png"), full_page=False)
        for k, v in results.items():
            print(f"RESULT {k}: {v:.1f} s ({v / results['500']:.2f}x the 500 view)")
        pg = tab(); pg.goto(base(600, "&method=tsne")); t = settle(pg); print(f"t-SNE at 21000: {t:.1f} s", flush=True)
        pg.screenshot(path=str(SHOTS / "scale_tsne_21000.png"), full_page=True)
        pg = tab(); pg.goto(base(150)); settle(pg)
        pts = pg.locator(".js-plotly-plot .scatterlayer .point")
        print("svg points", pts.count())
        pg.screenshot(path=str(SHOTS / "scale_5000_full.png"), full_page=True)
        pg.get_by_role("link", name="Layer analysis").first.click()
        pg.get_by_text("Separability by layer").wait_for(timeout=300000); pg.wait_for_timeout(8000)
        pg.screenshot(path=str(SHOTS / "scale_layer_analysis.png"), full_page=True)
        pg.get_by_role("link", name="Data & cache").first.click()
        pg.get_by_text("Stored embeddings").wait_for(timeout=120000); pg.wait_for_timeout(3000)
        pg.screenshot(path=str(SHOTS / "scale_data_cache.png"), full_page=True)
        b.close()
finally:
    proc.terminate(); proc.wait(timeout=15)
    print("server alive until the end:", proc.returncode is not None)
