"""A real browser: headless Chromium (Debian's `chromium` + `chromium-driver`), driven by
selenium, uploads a Corel-1K image to the page and reads the top-1 of the result grid, for the
Euclidean and then the Hamming index. Skipped, with the reason, where no browser is installed.

CBIR_SERVE_SCREENSHOT=<path.png> also saves a screenshot of the page after the search (how
docs/figures/serve_page.png was made).
"""

import os
import shutil

import numpy as np
import pytest

from tests.serve.conftest import corel_file

# Builds the Corel demo index (shared with test_load) and starts a browser: ~20 s in all.
pytestmark = pytest.mark.slow

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.common.exceptions import WebDriverException  # pylint: disable=wrong-import-position
from selenium.webdriver.common.by import By  # pylint: disable=wrong-import-position
from selenium.webdriver.support.ui import WebDriverWait  # pylint: disable=wrong-import-position

_BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
_DRIVER = shutil.which("chromedriver")


@pytest.fixture
def browser():
  if not _BROWSER or not _DRIVER:
    pytest.skip("no headless browser: install Debian's chromium and chromium-driver "
                f"(found chromium={_BROWSER}, chromedriver={_DRIVER})")
  options = webdriver.ChromeOptions()
  options.binary_location = _BROWSER
  for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--window-size=1280,900"):
    options.add_argument(arg)
  try:
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(_DRIVER))
  except WebDriverException as e:
    pytest.skip(f"chromium is installed but did not start: {e.msg}")
  try:
    yield driver
  finally:
    driver.quit()


def _top_hit(driver, status_words: str):
  """Waits for a result grid whose status line names `status_words`; returns its first hit."""
  def ready(d):
    status = d.find_element(By.ID, "status").text
    assert not d.find_element(By.ID, "status").get_attribute("class"), status  # no error
    hits = d.find_elements(By.CSS_SELECTOR, "#results .hit")
    return hits[0] if hits and status_words in status else False
  return WebDriverWait(driver, 60).until(ready)


def test_upload_a_corel_image_and_see_it_first(browser, corel_service):
  url, searchers, corel = corel_service
  names = searchers["float"].class_names
  ids = np.asarray(searchers["float"].index.ids)
  image_id = int(ids[np.searchsorted(ids, 400)])  # the first dinosaur in the database
  path = corel_file(corel, image_id, names)

  browser.get(url + "/")
  WebDriverWait(browser, 30).until(
      lambda d: len(d.find_elements(By.CSS_SELECTOR, 'input[name="index"]')) == 2)
  browser.find_element(By.ID, "file").send_keys(str(path))
  top = _top_hit(browser, "in float")
  assert top.get_attribute("data-id") == str(image_id)
  assert top.find_element(By.CLASS_NAME, "cls").text == "dinosaurs"
  assert f"id {image_id}" in top.text and "d=0.000" in top.text
  assert len(browser.find_elements(By.CSS_SELECTOR, "#results .hit")) == 10
  # The database thumbnail and the query preview loaded.
  WebDriverWait(browser, 30).until(lambda d: d.execute_script(
      "const i = document.querySelector('#results .hit img');"
      "return i && i.complete && i.naturalWidth > 0;"))
  assert browser.execute_script("return document.getElementById('query').naturalWidth") > 0

  browser.find_element(By.ID, "index-binary").click()  # switch to the Hamming index
  top = _top_hit(browser, "in binary")
  assert "d=0" in top.text and top.find_element(By.CLASS_NAME, "cls").text

  browser.find_element(By.ID, "index-float").click()
  top = _top_hit(browser, "in float")
  assert top.get_attribute("data-id") == str(image_id)
  WebDriverWait(browser, 30).until(lambda d: d.execute_script(
      "return [...document.querySelectorAll('#results .hit img')]"
      ".every(i => i.complete && i.naturalWidth > 0);"))
  if os.environ.get("CBIR_SERVE_SCREENSHOT"):
    browser.save_screenshot(os.environ["CBIR_SERVE_SCREENSHOT"])
