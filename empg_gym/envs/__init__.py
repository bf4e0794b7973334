"""The env families and their registered ids.

Each family lives in its own folder and is imported only when ``gym.make`` builds one of its envs; this module
only registers ids (cheap), so ``import empg_gym`` stays fast.
"""

from empg_gym.registration import register_env

register_env(
    "EMPG-KeyDoor-v0",
    "empg_gym.envs.toy:KeyDoorEnv",
    max_episode_steps=10,
    family="toy",
    description="Tiny corridor task (take the key, open the door) for tests and CPU learning checks.",
)

register_env(
    "EMPG-KeyRooms-v0",
    "empg_gym.envs.toy:KeyDoorRoomsEnv",
    max_episode_steps=80,
    family="toy",
    description="Rooms behind coloured locked doors: fetch each key, open each door (CPU learning benchmark).",
)

register_env(
    "EMPG-KeyRoomsHard-v0",
    "empg_gym.envs.toy:KeyDoorRoomsEnv",
    max_episode_steps=120,
    kwargs={"difficulty": "hard"},
    family="toy",
    description="KeyRooms with 2-3 doors in every training layout (longer horizons, rarer wins).",
)

register_env(
    "EMPG-DeepSearch-v0",
    "empg_gym.envs.deepsearch.env:DeepSearchEnv",
    max_episode_steps=5,
    family="deepsearch",
    description="Multi-hop QA by searching a corpus (Search-R1 protocol; generated world, local BM25).",
)

register_env(
    "EMPG-WebShop-v0",
    "empg_gym.envs.webshop.env:WebShopTextEnv",
    max_episode_steps=15,
    family="webshop",
    description="WebShop shopping in text: search, click products and options, buy (generated 1,200-product catalog).",
)

register_env(
    "EMPG-WebShop-Browser-v0",
    "empg_gym.envs.webshop.browser:WebShopBrowserEnv",
    max_episode_steps=15,
    family="webshop",
    description="The same WebShop tasks in headless Chromium (Selenium) against the family's Flask site.",
)

register_env(
    "EMPG-ALFWorld-v0",
    "empg_gym.envs.alfworld.env:AlfWorldEnv",
    max_episode_steps=50,
    family="alfworld",
    description="ALFWorld household tasks on alfworld's own engine (real games or embedded procedural ones).",
)
